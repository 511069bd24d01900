from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from services.api.deps import IdPath, QueueDep, StoreDep
from services.common.jobs import Job, JobRepository, JobState
from services.common.storage import InvalidKeyError, ObjectNotFoundError
from services.pipeline.config import PipelineConfig
from services.pipeline.launch import PipelineBusyError, pipeline_state, resume_pipeline, start_pipeline, stop_pipeline
from services.pipeline.records import PipelineRecord, PipelineRepository

router = APIRouter(prefix="/v1/pipelines", tags=["pipelines"])


class PipelineAccepted(BaseModel):
    pipeline_id: str
    dataset_id: str
    job_id: str


class PipelineStatus(BaseModel):
    pipeline: PipelineRecord
    state: JobState
    stage_jobs: dict[str, Job]


def _record_or_404(store: StoreDep, pipeline_id: str) -> PipelineRecord:
    try:
        return PipelineRepository(store).get(pipeline_id)
    except (ObjectNotFoundError, InvalidKeyError):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no pipeline {pipeline_id!r}") from None


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=PipelineAccepted)
def create_pipeline(config: PipelineConfig, store: StoreDep, queue: QueueDep) -> PipelineAccepted:
    """Crawl → filter → caption → train → sample, as chained jobs."""
    try:
        record, job = start_pipeline(config, store, queue)
    except ObjectNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset {config.dataset.id!r}") from None
    return PipelineAccepted(pipeline_id=record.id, dataset_id=record.dataset_id, job_id=job.id)


@router.get("/{pipeline_id}", response_model=PipelineStatus)
def get_pipeline(pipeline_id: IdPath, store: StoreDep) -> PipelineStatus:
    """The pipeline, its latest run's state and every stage job with its progress."""
    record = _record_or_404(store, pipeline_id)
    jobs = JobRepository(store)
    stage_jobs = {name: jobs.get(run.job_id) for name, run in record.stages.items()}
    return PipelineStatus(pipeline=record, state=pipeline_state(record, store), stage_jobs=stage_jobs)


@router.post("/{pipeline_id}/stop", response_model=PipelineStatus)
def stop(pipeline_id: IdPath, store: StoreDep) -> PipelineStatus:
    """Cancel the running stage and the run; finished stages stay, `resume` continues from here."""
    _record_or_404(store, pipeline_id)
    stop_pipeline(pipeline_id, store)
    return get_pipeline(pipeline_id, store)


@router.post("/{pipeline_id}/resume", status_code=status.HTTP_202_ACCEPTED, response_model=PipelineAccepted)
def resume(pipeline_id: IdPath, store: StoreDep, queue: QueueDep) -> PipelineAccepted:
    """Run again from the stage that failed or was canceled; finished stages are not redone."""
    _record_or_404(store, pipeline_id)
    try:
        record, job = resume_pipeline(pipeline_id, store, queue)
    except PipelineBusyError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    return PipelineAccepted(pipeline_id=record.id, dataset_id=record.dataset_id, job_id=job.id)
