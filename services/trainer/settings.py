"""Trainer settings (`GHIBLI_TRAINER_*`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class TrainerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GHIBLI_TRAINER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    base_model: str = Field(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", description="Hub id or local folder of the SD1.5 pipeline."
    )
    multi_gpu: bool = Field(True, description="With more than one CUDA device, train through `accelerate launch`.")
    accelerate_config: Path = Field(
        REPO_ROOT / "deploy" / "accelerate" / "2gpu-fp16.yaml", description="Config passed to `accelerate launch`."
    )
    num_processes: int | None = Field(None, ge=1, description="Processes to launch; default: every visible GPU.")
