"""FastAPI dependencies: settings, store and queue, built once per app."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import Depends, Path, Request

from services.common.params import ID_PATTERN
from services.common.queue import JobQueue
from services.common.settings import Settings
from services.common.storage import KEY_PATTERN, MAX_KEY_LENGTH, ObjectStore


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> ObjectStore:
    return request.app.state.store


def get_queue(request: Request) -> JobQueue:
    return request.app.state.queue


def get_decode_limiter(request: Request) -> anyio.CapacityLimiter:
    """Bounds the uploads decoded at once (threads, off the event loop)."""
    return request.app.state.decode_limiter


def get_known_datasets(request: Request) -> set[str]:
    """Dataset ids this process has seen exist: a job submission for one skips the store round trip."""
    return request.app.state.known_datasets


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ObjectStore, Depends(get_store)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
KnownDatasetsDep = Annotated[set[str], Depends(get_known_datasets)]
DecodeLimiterDep = Annotated[anyio.CapacityLimiter, Depends(get_decode_limiter)]
# Path parameters as the OpenAPI schema states them: ids are what `new_id` makes, keys what the store accepts.
IdPath = Annotated[str, Path(pattern=ID_PATTERN, max_length=100)]
KeyPath = Annotated[str, Path(pattern=KEY_PATTERN, max_length=MAX_KEY_LENGTH)]
