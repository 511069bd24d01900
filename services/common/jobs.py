"""Job records and the context a job handler runs in.

A job record lives in the object store at `jobs/<id>.json`, so it survives worker crashes and
broker restarts. A cancel request is a separate marker object (`jobs/<id>.cancel`) so the API
never races the worker on the record itself.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from services.common.settings import Settings
from services.common.storage import ObjectNotFoundError, ObjectStore


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.succeeded, JobState.failed, JobState.canceled)


class Progress(BaseModel):
    step: int = 0
    total: int | None = None
    message: str = ""
    metrics: dict[str, float] = Field(default_factory=dict, description="e.g. loss, lr, it/s, eta_s")


class Job(BaseModel):
    id: str
    type: str
    state: JobState = JobState.queued
    params: dict[str, Any] = Field(default_factory=dict)
    progress: Progress = Field(default_factory=Progress)
    result: dict[str, Any] = Field(default_factory=dict, description="Artifact keys and summary.")
    error: str | None = None
    attempts: int = 0
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None


class JobCanceledError(Exception):
    """Raised inside a handler when the job's cancel marker has been set."""


class TransientJobError(Exception):
    """A fault worth retrying (network blip, store briefly down); the job is retried with backoff."""


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def now() -> datetime:
    return datetime.now(UTC)


class JobRepository:
    """Job records in the object store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @staticmethod
    def record_key(job_id: str) -> str:
        return f"jobs/{job_id}.json"

    @staticmethod
    def cancel_key(job_id: str) -> str:
        return f"jobs/{job_id}.cancel"

    def create(self, job_type: str, params: dict[str, Any]) -> Job:
        job = Job(id=new_id(job_type), type=job_type, params=params)
        self.save(job)
        return job

    def save(self, job: Job) -> None:
        self.store.put_bytes(self.record_key(job.id), job.model_dump_json().encode(), "application/json")

    def get(self, job_id: str) -> Job:
        """Raise ObjectNotFoundError for an unknown id (and InvalidKeyError for a malformed one)."""
        return Job.model_validate_json(self.store.get_bytes(self.record_key(job_id)))

    def list(self, state: JobState | None = None, job_type: str | None = None) -> Iterator[Job]:
        for key in self.store.list("jobs/"):
            if not key.endswith(".json") or key.count("/") != 1:
                continue
            try:
                job = Job.model_validate_json(self.store.get_bytes(key))
            except ObjectNotFoundError:
                continue
            if (state is None or job.state == state) and (job_type is None or job.type == job_type):
                yield job

    def request_cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.state.terminal:
            return job
        self.store.put_bytes(self.cancel_key(job_id), b"canceled", "text/plain")
        if job.state == JobState.queued:
            job.state = JobState.canceled
            job.finished_at = now()
            self.save(job)
        return job

    def cancel_requested(self, job_id: str) -> bool:
        return self.store.exists(self.cancel_key(job_id))


class JobContext:
    """What a handler gets: its job, the store, settings, progress reporting and cancellation."""

    # Progress writes are throttled so a tight loop does not hammer the store.
    progress_interval_s = 0.5
    cancel_check_interval_s = 1.0

    def __init__(self, job: Job, params: BaseModel, store: ObjectStore, settings: Settings) -> None:
        self.job = job
        self.params = params  # the job type's validated params model
        self.store = store
        self.settings = settings
        self.repo = JobRepository(store)
        self._lock = threading.Lock()
        self._last_progress_write = 0.0
        self._last_cancel_check = 0.0

    def progress(
        self,
        step: int,
        total: int | None = None,
        message: str = "",
        metrics: dict[str, float] | None = None,
        force: bool = False,
    ) -> None:
        with self._lock:
            self.job.progress = Progress(step=step, total=total, message=message, metrics=metrics or {})
            moment = time.monotonic()
            if (
                force
                or (total is not None and step >= total)
                or moment - self._last_progress_write >= self.progress_interval_s
            ):
                self._last_progress_write = moment
                self.job.heartbeat_at = now()
                self.repo.save(self.job)
        self.check_canceled()

    def heartbeat(self) -> None:
        with self._lock:
            self.job.heartbeat_at = now()
            self.repo.save(self.job)

    def check_canceled(self) -> None:
        moment = time.monotonic()
        if moment - self._last_cancel_check < self.cancel_check_interval_s:
            return
        self._last_cancel_check = moment
        if self.repo.cancel_requested(self.job.id):
            raise JobCanceledError(self.job.id)

    def scratch_dir(self) -> Path:
        """A local working directory for this job: kept across retries so work can resume, removed once the job
        ends (`release_scratch`). Refused with a clear error when the disk under it is nearly full."""
        path = scratch_path(self.settings, self.job.id)
        path.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(path).free
        if free < self.settings.scratch_min_free_bytes:
            raise ScratchFullError(
                f"the scratch area {path.parent} has {free / 2**30:.1f} GiB free, less than the "
                f"{self.settings.scratch_min_free_bytes / 2**30:.1f} GiB a job needs (GHIBLI_SCRATCH_MIN_FREE_BYTES)"
            )
        return path


class ScratchFullError(RuntimeError):
    """The disk holding the scratch area is (nearly) full."""


def scratch_path(settings: Settings, job_id: str) -> Path:
    return settings.data_dir / "scratch" / job_id


def release_scratch(settings: Settings, job_id: str) -> None:
    """Remove a finished job's scratch directory (a retry would have needed it; a terminal job does not)."""
    shutil.rmtree(scratch_path(settings, job_id), ignore_errors=True)
