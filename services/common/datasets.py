"""Datasets and their raw images.

A dataset record is `datasets/<id>/dataset.json`. Each raw image is stored once, by content, at
`images/raw/<aa>/<sha256>.<ext>`, and the dataset lists it with one small record per image at
`datasets/<id>/raw/<sha256>.json` (provenance: source, query, character, movie, size). One
object per image means concurrent uploads and crawls never race on a shared manifest.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from services.common.images import DEFAULT_MAX_PIXELS, inspect_image
from services.common.jobs import new_id, now
from services.common.storage import ObjectStore, sha256_hex

RAW_IMAGE_NAMESPACE = "images/raw"


class Character(BaseModel):
    character: str = Field(min_length=1, max_length=200)
    movie: str = Field(min_length=1, max_length=200)
    aliases: list[str] = Field(default_factory=list, max_length=20)
    limit: int | None = Field(None, ge=1, le=10_000, description="Images to collect for this character.")


class Dataset(BaseModel):
    id: str
    name: str
    characters: list[Character] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=now)


class RawImage(BaseModel):
    sha256: str
    key: str
    content_type: str
    bytes: int
    width: int
    height: int
    source: str = Field(description="URL, file path, 'upload:<filename>' …")
    query: str | None = None
    character: str | None = None
    movie: str | None = None
    added_at: datetime = Field(default_factory=now)
    extra: dict[str, Any] = Field(default_factory=dict)


class DatasetRepository:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @staticmethod
    def record_key(dataset_id: str) -> str:
        return f"datasets/{dataset_id}/dataset.json"

    def create(self, name: str, characters: list[Character] | None = None) -> Dataset:
        dataset = Dataset(id=new_id("ds"), name=name, characters=characters or [])
        self.store.put_bytes(self.record_key(dataset.id), dataset.model_dump_json().encode(), "application/json")
        return dataset

    def get(self, dataset_id: str) -> Dataset:
        return Dataset.model_validate_json(self.store.get_bytes(self.record_key(dataset_id)))

    def list(self) -> Iterator[Dataset]:
        for key in self.store.list("datasets/"):
            if key.endswith("/dataset.json") and key.count("/") == 2:
                yield Dataset.model_validate_json(self.store.get_bytes(key))

    def add_raw_image(
        self, dataset_id: str, data: bytes, source: str, max_pixels: int = DEFAULT_MAX_PIXELS, **provenance: Any
    ) -> tuple[RawImage, bool]:
        """Validate and store image bytes; return (record, newly added to this dataset).

        Raises ImageRejectedError (with the reason) for anything that is not a sane image.
        """
        digest = sha256_hex(data)
        record_key = f"datasets/{dataset_id}/raw/{digest}.json"
        if self.store.exists(record_key):  # a known file is not decoded again
            return RawImage.model_validate_json(self.store.get_bytes(record_key)), False
        extension, content_type, width, height = inspect_image(data, max_pixels)
        key, _ = self.store.put_content_addressed(RAW_IMAGE_NAMESPACE, data, extension, content_type)
        record = RawImage(
            sha256=digest,
            key=key,
            content_type=content_type,
            bytes=len(data),
            width=width,
            height=height,
            source=source,
            **provenance,
        )
        self.store.put_bytes(record_key, record.model_dump_json().encode(), "application/json")
        return record, True

    def raw_images(self, dataset_id: str) -> Iterator[RawImage]:
        for key in self.store.list(f"datasets/{dataset_id}/raw/"):
            if key.endswith(".json"):
                yield RawImage.model_validate_json(self.store.get_bytes(key))

    def count_raw_images(self, dataset_id: str) -> int:
        return sum(1 for key in self.store.list(f"datasets/{dataset_id}/raw/") if key.endswith(".json"))
