"""Captioner settings (`GHIBLI_CAPTIONER_*`): which BLIP to load and how to run it."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL_ID = "Salesforce/blip-image-captioning-large"


class CaptionerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GHIBLI_CAPTIONER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    model_id: str = Field(DEFAULT_MODEL_ID, description="Hub id or local folder of a BlipForConditionalGeneration.")
    cache_dir: Path | None = Field(None, description="Hugging Face cache folder; unset = HF_HOME's default.")
    batch_size: int = Field(16, ge=1, le=512, description="Images per BLIP forward pass (a job may override).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = CUDA when present, else CPU.")
    precision: Literal["auto", "fp16", "bf16", "fp32"] = Field(
        "auto", description="auto = fp16 on CUDA, fp32 on CPU; half precision on CPU falls back to fp32."
    )
    extra_names: list[str] = Field(
        default_factory=list, description="Names or titles scrubbed from every caption, beside the built-in list."
    )


@lru_cache
def get_captioner_settings() -> CaptionerSettings:
    return CaptionerSettings()
