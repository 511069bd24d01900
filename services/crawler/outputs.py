"""The writer stage: where accepted images go (an image sink) and the per-URL manifest.

Two pairs: the dataset in the object store (the job) and a plain folder (the local CLI). Both
are content-addressed and both manifests remember every URL already handled, so a rerun skips
finished work and never stores an image twice.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from services.common.datasets import DatasetRepository
from services.common.images import inspect_image
from services.common.jobs import now
from services.common.locks import KeyedLocks
from services.common.storage import ObjectStore, atomic_write, sha256_hex

Status = Literal["ok", "duplicate", "rejected"]


class Candidate(BaseModel):
    """One URL (or archive/folder entry) to ingest, with what it is supposed to show."""

    url: str
    origin: str = Field(description="simple_image_download, bing, url-list, zip, folder …")
    query: str | None = None
    character: str | None = None
    movie: str | None = None

    @property
    def group(self) -> str:
        """Images are balanced per character; uncategorised URLs share one group."""
        return self.character or ""


class ManifestRecord(BaseModel):
    url: str
    status: Status
    reason: str | None = None
    retryable: bool = Field(False, description="A transient failure: a rerun tries the URL again.")
    origin: str
    query: str | None = None
    character: str | None = None
    movie: str | None = None
    sha256: str | None = None
    key: str | None = None
    bytes: int | None = None
    width: int | None = None
    height: int | None = None
    content_type: str | None = None
    final_url: str | None = None
    http_status: int | None = None
    attempts: int = 0
    fetched_at: datetime = Field(default_factory=now)


class StoredImage(BaseModel):
    sha256: str
    key: str
    content_type: str
    width: int
    height: int
    new: bool


class ImageSink(Protocol):
    def add(self, data: bytes, candidate: Candidate) -> StoredImage:
        """Validate and store; raises ImageRejectedError with the reason."""
        ...


class Manifest(Protocol):
    done: dict[str, ManifestRecord]  # URLs finished by an earlier run

    def append(self, record: ManifestRecord) -> None: ...

    def close(self) -> str:
        """Write everything out; return where the manifest is."""
        ...


class DatasetSink:
    def __init__(self, store: ObjectStore, dataset_id: str, max_pixels: int, job_id: str) -> None:
        self.repo = DatasetRepository(store)
        self.dataset_id, self.max_pixels, self.job_id = dataset_id, max_pixels, job_id
        self.lock_for = KeyedLocks()  # by sha256: of two URLs with the same bytes, one sees the other's as stored

    def add(self, data: bytes, candidate: Candidate) -> StoredImage:
        with self.lock_for(sha256_hex(data)):
            record, new = self.repo.add_raw_image(
                self.dataset_id,
                data,
                source=candidate.url,
                max_pixels=self.max_pixels,
                query=candidate.query,
                character=candidate.character,
                movie=candidate.movie,
                extra={"origin": candidate.origin, "crawl_job": self.job_id},
            )
        return StoredImage(
            sha256=record.sha256,
            key=record.key,
            content_type=record.content_type,
            width=record.width,
            height=record.height,
            new=new,
        )


def _folder_name(character: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", character or "").strip("._") or "unsorted"


class FolderSink:
    """`<out>/<character>/<sha256>.<ext>`; an image already anywhere in the folder is not written again."""

    def __init__(self, out_dir: Path, max_pixels: int) -> None:
        self.out_dir, self.max_pixels = out_dir, max_pixels
        self.lock_for = KeyedLocks()  # by sha256, as in DatasetSink
        self.known: dict[str, Path] = {
            path.stem: path for path in out_dir.glob("*/*.*") if re.fullmatch(r"[0-9a-f]{64}", path.stem)
        }

    def add(self, data: bytes, candidate: Candidate) -> StoredImage:
        extension, content_type, width, height = inspect_image(data, self.max_pixels)
        digest = sha256_hex(data)
        with self.lock_for(digest):
            path = self.known.get(digest)
            new = path is None
            if path is None:
                path = self.out_dir / _folder_name(candidate.character) / f"{digest}.{extension}"
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, data, durable=False)
                self.known[digest] = path
        return StoredImage(
            sha256=digest,
            key=str(path.relative_to(self.out_dir)),
            content_type=content_type,
            width=width,
            height=height,
            new=new,
        )


def _finished(records: list[ManifestRecord]) -> dict[str, ManifestRecord]:
    """The latest record per URL, except transient failures, which a rerun retries."""
    latest = {record.url: record for record in records}
    return {url: record for url, record in latest.items() if not record.retryable}


def _parse_lines(text: str) -> list[ManifestRecord]:
    return [ManifestRecord.model_validate_json(line) for line in text.splitlines() if line.strip()]


class StoreManifest:
    """`datasets/<ds>/crawl/<job>/manifest.jsonl`, built from numbered parts written as the job goes.

    An object store cannot append, so records are buffered and flushed as `parts/<n>.jsonl`
    (every N records or few seconds); a killed job loses at most the unflushed tail, which the
    rerun fetches again and deduplicates by content.
    """

    flush_interval_s = 5.0

    def __init__(self, store: ObjectStore, dataset_id: str, job_id: str, flush_every: int) -> None:
        self.store, self.flush_every = store, flush_every
        self.prefix = f"datasets/{dataset_id}/crawl/{job_id}/"
        self.part_keys = sorted(key for key in store.list(self.prefix + "parts/") if key.endswith(".jsonl"))
        self.records = [record for key in self.part_keys for record in _parse_lines(store.get_bytes(key).decode())]
        self.done = _finished(self.records)
        self.buffer: list[ManifestRecord] = []
        self.last_flush = time.monotonic()

    @property
    def key(self) -> str:
        return self.prefix + "manifest.jsonl"

    def append(self, record: ManifestRecord) -> None:
        self.buffer.append(record)
        if len(self.buffer) >= self.flush_every or time.monotonic() - self.last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            part_key = f"{self.prefix}parts/{len(self.part_keys):06d}.jsonl"
            self.store.put_bytes(part_key, _jsonl(self.buffer), "application/x-ndjson")
            self.part_keys.append(part_key)
            self.records.extend(self.buffer)
            self.buffer = []
        self.last_flush = time.monotonic()

    def close(self) -> str:
        self.flush()
        latest = {record.url: record for record in self.records}
        self.store.put_bytes(self.key, _jsonl(list(latest.values())), "application/x-ndjson")
        return self.key


class FolderManifest:
    """`<out>/manifest.jsonl`, appended line by line."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / "manifest.jsonl"
        out_dir.mkdir(parents=True, exist_ok=True)
        self.done = _finished(_parse_lines(self.path.read_text()) if self.path.exists() else [])
        self.handle = self.path.open("a", encoding="utf-8")

    def append(self, record: ManifestRecord) -> None:
        self.handle.write(record.model_dump_json() + "\n")
        self.handle.flush()

    def close(self) -> str:
        self.handle.close()
        return str(self.path)


def _jsonl(records: list[ManifestRecord]) -> bytes:
    return "".join(record.model_dump_json() + "\n" for record in records).encode()
