"""Filter service settings (`GHIBLI_FILTER_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.images import DEFAULT_MAX_PIXELS


class FilterSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GHIBLI_FILTER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    workers: int | None = Field(None, ge=1, description="Analysis processes; unset = one per CPU core.")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0, description="Larger images are refused as decompression bombs.")
    ocr_side: int = Field(512, ge=64, description="Longest side of the copy Tesseract reads.")
    tessdata_dir: str | None = Field(
        None, description="Folder with Tesseract's eng.traineddata; unset: $TESSDATA_PREFIX, else the Debian package's."
    )
    text_model: str | None = Field(
        None,
        description="Path of PP-OCRv4's text-detection model (ch_PP-OCRv4_det_infer.onnx); unset: the one in the "
        "installed rapidocr_onnxruntime wheel.",
    )
    thumbnail_side: int = Field(128, ge=16, le=512, description="Contact-sheet thumbnail size.")
