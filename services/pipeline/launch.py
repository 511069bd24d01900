"""Starting and resuming pipelines; shared by the API and the CLI."""

from __future__ import annotations

from services.common.datasets import DatasetRepository
from services.common.jobs import Job, JobRepository, JobState, now
from services.common.queue import JobQueue, QueueUnavailableError
from services.common.storage import ObjectStore
from services.pipeline.config import PipelineConfig
from services.pipeline.records import PipelineRecord, PipelineRepository


class PipelineBusyError(RuntimeError):
    """The pipeline already has a run in progress."""


def start_pipeline(config: PipelineConfig, store: ObjectStore, queue: JobQueue) -> tuple[PipelineRecord, Job]:
    datasets = DatasetRepository(store)
    if config.dataset.id:
        dataset_id = datasets.get(config.dataset.id).id
    else:
        dataset_id = datasets.create(config.dataset.name, config.dataset.characters).id
    record = PipelineRepository(store).create(config, dataset_id)
    return record, _submit_run(record, store, queue)


def resume_pipeline(pipeline_id: str, store: ObjectStore, queue: JobQueue) -> tuple[PipelineRecord, Job]:
    """Run the pipeline again: finished stages are kept, the failed or canceled one starts over."""
    record = PipelineRepository(store).get(pipeline_id)
    jobs = JobRepository(store)
    if record.job_ids and not jobs.get(record.job_ids[-1]).state.terminal:
        raise PipelineBusyError(f"pipeline {pipeline_id} is still running as job {record.job_ids[-1]}")
    return record, _submit_run(record, store, queue)


def _submit_run(record: PipelineRecord, store: ObjectStore, queue: JobQueue) -> Job:
    jobs = JobRepository(store)
    job = jobs.create("pipeline", {"pipeline_id": record.id})
    record.job_ids.append(job.id)
    PipelineRepository(store).save(record)
    try:
        queue.submit(job)
    except QueueUnavailableError as error:
        # The run is recorded as failed, never queued forever: `resume` starts it once the queue is back.
        job.state, job.error, job.finished_at = JobState.failed, str(error), now()
        jobs.save(job)
        raise
    return job


def stop_pipeline(pipeline_id: str, store: ObjectStore) -> PipelineRecord:
    """Cancel the latest run and the stage job it is on; `resume_pipeline` picks up from there."""
    record = PipelineRepository(store).get(pipeline_id)
    jobs = JobRepository(store)
    # The stage first: an embedded run executes it inline and only sees the pipeline's own cancel
    # once the stage returns.
    for run in record.stages.values():
        if not run.state.terminal:
            jobs.request_cancel(run.job_id)
    if record.job_ids:
        jobs.request_cancel(record.job_ids[-1])
    return record


def pipeline_state(record: PipelineRecord, store: ObjectStore) -> JobState:
    """The state of the pipeline's latest run."""
    if not record.job_ids:
        return JobState.queued
    return JobRepository(store).get(record.job_ids[-1]).state
