"""Run one job to a terminal state; shared by the Celery workers and the embedded executor."""

from __future__ import annotations

import logging
import threading
import time
import traceback

from services.common import registry
from services.common.jobs import (
    Job,
    JobCanceledError,
    JobContext,
    JobRepository,
    JobState,
    TransientJobError,
    now,
    release_scratch,
)
from services.common.metrics import JOB_DURATION
from services.common.settings import Settings
from services.common.storage import ObjectStore

log = logging.getLogger(__name__)


def _heartbeat_until(stop: threading.Event, context: JobContext, interval_s: float) -> None:
    while not stop.wait(interval_s):
        try:
            context.heartbeat()
        except Exception:  # a missed heartbeat is harmless; the next one retries
            log.warning("heartbeat for %s failed", context.job.id, exc_info=True)


def execute_job(job_id: str, store: ObjectStore, settings: Settings) -> Job:
    """Run the job's handler and record the outcome.

    Safe to call again for the same job: a terminal job is returned untouched, and handlers
    are written to resume (content-addressed outputs, checkpoints). TransientJobError is
    re-raised after the record is put back to `queued`, so the caller can retry.
    """
    repo = JobRepository(store)
    job = repo.get(job_id)
    if job.state.terminal:
        return job
    if repo.cancel_requested(job_id):
        job.state, job.finished_at = JobState.canceled, now()
        repo.save(job)
        return job

    job.state, job.attempts, job.error = JobState.running, job.attempts + 1, None
    job.started_at = job.started_at or now()
    job.heartbeat_at = now()
    repo.save(job)
    try:
        handle = registry.handler(job.type)
        params = registry.params_model(job.type).model_validate(job.params)
    except Exception as error:
        job.state, job.finished_at = JobState.failed, now()
        job.error = f"{type(error).__name__}: {error}"
        repo.save(job)
        return job
    context = JobContext(job, params, store, settings)

    stop_heartbeat = threading.Event()
    heartbeat = threading.Thread(
        target=_heartbeat_until,
        args=(stop_heartbeat, context, settings.job_lease_seconds / 4),
        name=f"heartbeat-{job_id}",
        daemon=True,
    )
    heartbeat.start()
    started = time.perf_counter()
    try:
        result = handle(context)
    except JobCanceledError:
        job.state = JobState.canceled
    except TransientJobError as error:
        job.state, job.error = JobState.queued, f"retrying after transient fault: {error}"
        raise
    except Exception as error:
        log.exception("job %s failed", job_id)
        job.state = JobState.failed
        job.error = f"{type(error).__name__}: {error}"
        job.result["traceback"] = traceback.format_exc(limit=8)
    else:
        job.state, job.result = JobState.succeeded, result
        if job.progress.total is not None:
            job.progress.step = job.progress.total
    finally:
        stop_heartbeat.set()
        heartbeat.join()
        JOB_DURATION.labels(job.type, job.state.value).observe(time.perf_counter() - started)
        with context._lock:
            if job.state != JobState.queued:
                job.finished_at = now()
            repo.save(job)
        if job.state.terminal:
            release_scratch(settings, job_id)
    return job
