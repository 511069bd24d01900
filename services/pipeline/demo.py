"""Everything the offline demo needs that a lab server would download: pictures and models.

The pictures are painted procedurally and imported as a zip through the crawl stage; the models
are tiny random SD1.5/BLIP folders that load through the same `from_pretrained` code as the real
ones. Environment variables point the services' settings at them unless the caller set them.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

from services.common.storage import ObjectStore
from services.pipeline.config import PipelineConfig
from services.pipeline.demo_images import generate_demo_images

MODEL_SETTINGS = {
    "GHIBLI_CAPTIONER_MODEL_ID": "tiny-blip",
    "GHIBLI_TRAINER_BASE_MODEL": "tiny-sd",
    "GHIBLI_INFERENCE_BASE_MODEL": "tiny-sd",
}


def _zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # PNG/JPEG do not compress further
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def build_demo_models(models_dir: Path) -> dict[str, Path]:
    """Tiny SD and BLIP folders under `models_dir`, built once and reused."""
    from services.common.tiny_models import build_tiny_blip, build_tiny_sd

    sd_path, blip_path = models_dir / "tiny-sd", models_dir / "tiny-blip"
    if not (sd_path / "model_index.json").exists():
        build_tiny_sd(sd_path)
    if not (blip_path / "config.json").exists():
        build_tiny_blip(blip_path)
    return {"tiny-sd": sd_path, "tiny-blip": blip_path}


def prepare_demo(config: PipelineConfig, workdir: Path, store: ObjectStore) -> PipelineConfig:
    """Paint the pictures, build the models, upload the pictures; return the config to run."""
    images_dir = workdir / "images"
    if not images_dir.exists():
        characters = [character.model_dump() for character in config.dataset.characters]
        generate_demo_images(images_dir, characters)
    archive_key, _ = store.put_content_addressed("uploads", _zip_folder(images_dir), "zip", "application/zip")

    models = build_demo_models(workdir / "models")
    for variable, model in MODEL_SETTINGS.items():
        os.environ.setdefault(variable, str(models[model].resolve()))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    return config.with_stage("crawl", archive_key=archive_key, search=False)
