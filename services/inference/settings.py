"""Inference service settings (`GHIBLI_INFERENCE_*`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class InferenceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GHIBLI_INFERENCE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    base_model: str = Field(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", description="Hub id or local folder of the SD1.5 base."
    )
    device: Literal["auto", "cuda", "cpu"] = Field("auto", description="auto = CUDA when present, else CPU.")
    fp16: bool = Field(True, description="Half precision on CUDA (ignored on CPU, where fp16 is slow and lossy).")
    compile_unet: bool = Field(False, description="torch.compile the UNet (slow first call; CUDA only).")
    lora_cache_dir: Path = Field(Path("./data/lora-cache"), description="Downloaded LoRA weights, by sha256.")
    resident_loras: int = Field(8, ge=1, description="LoRA adapters kept loaded beside the base (LRU).")
    max_width: int = Field(1024, ge=8, multiple_of=8)
    max_height: int = Field(1024, ge=8, multiple_of=8)
    max_steps: int = Field(100, ge=1)
    max_images: int = Field(8, ge=1, description="Images one request may ask for.")
    max_batch_images: int = Field(8, ge=1, description="Images the batcher puts into one pipeline call.")
    batch_window_ms: float = Field(15.0, ge=0, description="How long the batcher waits for compatible requests.")
    max_queued_requests: int = Field(64, ge=1, description="Beyond this many waiting requests the API answers 429.")
    request_timeout_s: float = Field(300.0, gt=0, description="A request waiting longer gets 504.")
    model_name: str = Field("", description="Name shown to A1111 clients; defaults to the base model's last part.")

    @property
    def display_model_name(self) -> str:
        return self.model_name or self.base_model.rstrip("/").rsplit("/", 1)[-1]


@lru_cache
def get_inference_settings() -> InferenceSettings:
    return InferenceSettings()
