"""The `pipeline` job: run each stage as its own job, in order, and write the run's report."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from services.common.jobs import Job, JobCanceledError, JobContext, JobRepository, JobState, now
from services.common.queue import make_queue
from services.common.runner import execute_job
from services.pipeline.params import PipelineParams
from services.pipeline.records import PipelineRepository, StageRun
from services.pipeline.report import write_report

POLL_INTERVAL_S = 1.0


class StageFailedError(RuntimeError):
    pass


def run_pipeline(ctx: JobContext) -> dict[str, Any]:
    params: PipelineParams = ctx.params  # type: ignore[assignment]
    pipelines = PipelineRepository(ctx.store)
    jobs = JobRepository(ctx.store)
    record = pipelines.get(params.pipeline_id)
    stages = record.config.active_stages()
    upstream: dict[str, dict[str, Any]] = {}

    for index, stage in enumerate(stages):
        run = record.stages.get(stage.name)
        if run is not None and run.state == JobState.succeeded:
            upstream[stage.name] = jobs.get(run.job_id).result
            continue
        created = run is None or run.state in (JobState.failed, JobState.canceled)
        if created:
            stage_params = record.config.stage_params(stage, record.dataset_id, upstream)
            run = StageRun(job_id=jobs.create(stage.job_type, stage_params).id)
            record.stages[stage.name] = run
            pipelines.save(record)
        ctx.progress(index, len(stages), f"{stage.name}: started ({run.job_id})", force=True)
        if ctx.settings.embedded:
            # In-process: run the stage here rather than wait on a pool this job may occupy. A stage
            # left running by a dead process is run again; finished ones return at once.
            execute_job(run.job_id, ctx.store, ctx.settings)
        elif created:
            # A stage job still queued or running (this pipeline job was redelivered) is awaited, not duplicated.
            make_queue(ctx.store, ctx.settings).submit(jobs.get(run.job_id))
        finished = _await(ctx, jobs, run.job_id, index, len(stages), stage.name)
        run.state = finished.state
        pipelines.save(record)
        if finished.state == JobState.canceled and jobs.cancel_requested(ctx.job.id):
            raise JobCanceledError(ctx.job.id)  # stopped with the pipeline: the run ends canceled, not failed
        if finished.state != JobState.succeeded:
            raise StageFailedError(f"stage {stage.name} ({run.job_id}) {finished.state.value}: {finished.error}")
        upstream[stage.name] = finished.result

    record.report_key = write_report(ctx.store, record, upstream)
    pipelines.save(record)
    ctx.progress(len(stages), len(stages), "done", force=True)
    return {
        "pipeline_id": record.id,
        "dataset_id": record.dataset_id,
        "report": record.report_key,
        "stages": {name: run.job_id for name, run in record.stages.items()},
        "lora_id": upstream.get("train", {}).get("lora_id"),
    }


def _await(ctx: JobContext, jobs: JobRepository, job_id: str, index: int, total: int, name: str) -> Job:
    stale_after = timedelta(seconds=ctx.settings.job_lease_seconds * 3)
    last_submitted = now()
    while True:
        job = jobs.get(job_id)
        if job.state.terminal:
            return job
        last_sign_of_life = max(filter(None, (job.heartbeat_at, job.created_at, last_submitted)))
        if not ctx.settings.embedded and now() - last_sign_of_life > stale_after:
            # Its broker message was lost (e.g. Redis restarted without persistence): send it again.
            # A duplicate is harmless: the job lease lets only one copy run.
            make_queue(ctx.store, ctx.settings).submit(job)
            last_submitted = now()
        step = job.progress.step
        of = f"/{job.progress.total}" if job.progress.total is not None else ""
        try:
            ctx.progress(index, total, f"{name}: {step}{of} {job.progress.message}".rstrip())
        except JobCanceledError:
            jobs.request_cancel(job_id)
            raise
        time.sleep(POLL_INTERVAL_S)
