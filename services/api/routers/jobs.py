from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import Enum

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from services.api.deps import IdPath, KnownDatasetsDep, QueueDep, StoreDep
from services.common import registry
from services.common.datasets import DatasetRepository
from services.common.jobs import Job, JobRepository, JobState, Progress
from services.common.queue import QueueUnavailableError
from services.common.storage import InvalidKeyError, ObjectNotFoundError


class JobAccepted(BaseModel):
    job_id: str
    state: JobState


class JobSummary(BaseModel):
    """A job in a listing: no params or result, which can be large (`GET /v1/jobs/{id}` has them)."""

    id: str
    type: str
    state: JobState
    progress: Progress
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job) -> JobSummary:
        return cls.model_validate(job.model_dump(exclude={"params", "result"}))


def _job_or_404(repo: JobRepository, job_id: str) -> Job:
    try:
        return repo.get(job_id)
    except (ObjectNotFoundError, InvalidKeyError):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}") from None


def _submit_endpoint(job_type: str, params_model: type[BaseModel]) -> Callable[..., JobAccepted]:
    def submit(
        params: params_model,  # type: ignore[valid-type]
        store: StoreDep,
        queue: QueueDep,
        known_datasets: KnownDatasetsDep,
    ) -> JobAccepted:
        try:
            registry.admit(job_type, params)
        except ValueError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
        dataset_id = getattr(params, "dataset_id", None)
        if dataset_id is not None and dataset_id not in known_datasets:
            if not store.exists(DatasetRepository.record_key(dataset_id)):
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset {dataset_id!r}")
            known_datasets.add(dataset_id)
        jobs = JobRepository(store)
        job = jobs.create(job_type, params.model_dump(mode="json"))
        try:
            queue.submit(job)
        except QueueUnavailableError:
            store.delete(JobRepository.record_key(job.id))  # nothing will ever run it: leave no record behind
            raise
        return JobAccepted(job_id=job.id, state=job.state)

    # Postponed annotations make `params_model` the string "params_model", which FastAPI cannot
    # resolve (it is local); give it the class so the body is parsed and documented as that model.
    submit.__annotations__["params"] = params_model
    submit.__name__ = f"submit_{job_type}_job"
    submit.__doc__ = f"Queue a `{job_type}` job on the `{registry.JOB_TYPES[job_type].queue}` queue."
    return submit


JobType = Enum("JobType", {name: name for name in registry.JOB_TYPES}, type=str)  # type: ignore[misc]


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
    for job_type in registry.JOB_TYPES:
        router.add_api_route(
            f"/{job_type}",
            _submit_endpoint(job_type, registry.params_model(job_type)),
            methods=["POST"],
            status_code=status.HTTP_202_ACCEPTED,
            response_model=JobAccepted,
        )

    @router.get("", response_model=list[JobSummary])
    def list_jobs(store: StoreDep, status: JobState | None = None, type: JobType | None = None) -> list[JobSummary]:
        """Jobs, newest first, optionally filtered by state (`status`) and `type`: summaries without params/result."""
        jobs = JobRepository(store).list(state=status, job_type=type.value if type else None)
        return [JobSummary.of(job) for job in sorted(jobs, key=lambda job: job.created_at, reverse=True)]

    @router.get("/{job_id}", response_model=Job)
    def get_job(job_id: IdPath, store: StoreDep) -> Job:
        return _job_or_404(JobRepository(store), job_id)

    @router.post("/{job_id}/cancel", response_model=Job)
    def cancel_job(job_id: IdPath, store: StoreDep) -> Job:
        """Ask the job to stop; a queued job is canceled at once, a running one at its next check."""
        repo = JobRepository(store)
        _job_or_404(repo, job_id)
        return repo.request_cancel(job_id)

    return router
