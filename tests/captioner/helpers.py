"""Builders shared by the captioner tests."""

from __future__ import annotations

import io

from PIL import Image

from services.common.datasets import Character, Dataset, DatasetRepository
from services.common.storage import ObjectStore, sha256_hex

CHARACTERS = [
    Character(character="Chihiro", movie="Spirited Away", aliases=["Sen", "Chihiro Ogino"]),
    Character(character="Howl", movie="Howl's Moving Castle", aliases=["Wizard Howl"]),
]


def png(color: tuple[int, int, int], size: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def make_filtered_dataset(store: ObjectStore, count: int = 5) -> Dataset:
    """A dataset as the filter leaves it: clean images and `filtered/manifest.json`."""
    dataset = DatasetRepository(store).create("captions", CHARACTERS)
    images = []
    for index in range(count):
        data = png((40 * index, 200 - 30 * index, 90))
        key, _ = store.put_content_addressed("images/clean", data, "png", "image/png")
        character = CHARACTERS[index % len(CHARACTERS)]
        images.append(
            {
                "key": key,
                "sha256": sha256_hex(data),
                "source_sha256": sha256_hex(data + b"raw"),
                "source": f"https://example.test/{index}.jpg",
                "character": character.character,
                "movie": character.movie,
                "width": 48,
                "height": 48,
            }
        )
    store.put_json(
        f"datasets/{dataset.id}/filtered/manifest.json",
        {"dataset_id": dataset.id, "job_id": "job-filter", "images": images, "counts": {"kept": count}},
    )
    return dataset
