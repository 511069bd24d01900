"""Fixtures for trainer tests: a tiny captioned image set, as a folder and as a stored dataset."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from services.common.datasets import DatasetRepository
from services.common.storage import ObjectStore
from services.trainer.params import TrainParams

CAPTIONS = ["a red square on black", "a green bar on white", "a blue circle on grey", "a yellow cross on navy"]


def example_images() -> list[bytes]:
    """Four small, clearly different pictures (a tiny overfit set)."""
    pictures = []
    for index in range(len(CAPTIONS)):
        generator = np.random.default_rng(index)
        array = np.full((48, 40, 3), generator.integers(0, 255, 3), dtype=np.uint8)
        array[8 + 4 * index : 24 + 4 * index, 6:30] = generator.integers(0, 255, 3)
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        pictures.append(buffer.getvalue())
    return pictures


@pytest.fixture(scope="session")
def captioned_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("captioned")
    rows = []
    for index, (data, text) in enumerate(zip(example_images(), CAPTIONS, strict=True)):
        (folder / f"{index}.png").write_bytes(data)
        rows.append({"file_name": f"{index}.png", "text": text})
    (folder / "captions.json").write_text(json.dumps(rows))
    return folder


def store_captioned_dataset(store: ObjectStore, captions: list[str] | None = None) -> str:
    """A dataset as the captioner leaves it: clean images plus `captions/captions.json`."""
    dataset = DatasetRepository(store).create("tiny ghibli")
    rows = []
    for index, (data, text) in enumerate(zip(example_images(), captions or CAPTIONS, strict=True)):
        key, _ = store.put_content_addressed("images/clean", data, "png", "image/png")
        rows.append({"file_name": f"{index}.png", "image_key": key, "text": text, "source_sha256": key[-68:-4]})
    store.put_json(f"datasets/{dataset.id}/captions/captions.json", rows)
    return dataset.id


def tiny_params(**overrides: Any) -> TrainParams:
    """Few steps at 32 px: seconds on one CPU thread."""
    values: dict[str, Any] = {
        "dataset_id": "tiny",
        "rank": 4,
        "alpha": 2.0,  # alpha ≠ rank, so a file loaded at the wrong scale shows
        "resolution": 32,
        "batch_size": 2,
        "max_steps": 6,
        "learning_rate": 1e-3,
        "lr_scheduler": "constant",
        "checkpoint_every": 3,
        "validation_every": 3,
        "validation_prompts": ["a red square"],
        "validation_seeds": [0, 1],
        "validation_inference_steps": 2,
        **overrides,
    }
    return TrainParams.model_validate(values)
