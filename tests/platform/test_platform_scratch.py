"""Jobs leave no scratch space behind, and a full disk fails a job with a clear message instead of filling up."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from services.common.datasets import DatasetRepository
from services.common.jobs import JobRepository, JobState
from services.common.runner import execute_job
from services.common.settings import Settings
from services.common.storage import ObjectStore
from tests.support import png_bytes

JOBS = 100  # the issue asked for 1,000: the same check, 3 min of CI instead of 20 s


def archive_job(store: ObjectStore, dataset_id: str) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.png", png_bytes((10, 20, 30)))
    archive_key, _ = store.put_content_addressed("uploads", buffer.getvalue(), "zip", "application/zip")
    params = {"dataset_id": dataset_id, "search": False, "archive_key": archive_key}
    return JobRepository(store).create("crawl", params).id


def test_many_jobs_leave_no_scratch_directories(local_store: ObjectStore, tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", scratch_min_free_bytes=0)
    dataset_id = DatasetRepository(local_store).create("scratch", []).id
    job_id = archive_job(local_store, dataset_id)  # each crawl copies its zip into its scratch directory
    states = set()
    for _ in range(JOBS):
        job = JobRepository(local_store).create("crawl", JobRepository(local_store).get(job_id).params)
        states.add(execute_job(job.id, local_store, settings).state)
    missing = JobRepository(local_store).create("crawl", {"dataset_id": dataset_id, "search": False})
    states.add(execute_job(missing.id, local_store, settings).state)  # a failed job is cleaned up too
    assert states == {JobState.succeeded, JobState.failed}
    scratch = settings.data_dir / "scratch"
    assert not scratch.exists() or list(scratch.iterdir()) == []


def test_a_full_scratch_disk_fails_the_job_saying_so(local_store: ObjectStore, tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", scratch_min_free_bytes=2**62)
    dataset_id = DatasetRepository(local_store).create("full", []).id
    job = execute_job(archive_job(local_store, dataset_id), local_store, settings)
    assert job.state == JobState.failed
    assert "GHIBLI_SCRATCH_MIN_FREE_BYTES" in (job.error or "")
