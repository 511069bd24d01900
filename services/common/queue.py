"""Submitting jobs: through Celery/Redis, or to an in-process executor in embedded mode."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from services.common import registry
from services.common.jobs import Job, JobRepository, JobState, TransientJobError
from services.common.runner import execute_job
from services.common.settings import Settings
from services.common.storage import ObjectStore

log = logging.getLogger(__name__)


class QueueUnavailableError(TransientJobError):
    """The broker did not take the job (Redis down or unreachable); submitting again later may work."""


class JobQueue(Protocol):
    def submit(self, job: Job) -> None:
        """Hand the job to a worker; QueueUnavailableError when the broker cannot take it now."""

    def check(self) -> None:
        """Raise if jobs cannot be queued right now (used by /readyz)."""


class CeleryJobQueue:
    def __init__(self, settings: Settings) -> None:
        import redis

        from services.common.celery_app import celery_app

        self.celery = celery_app
        self.redis = redis.Redis.from_url(settings.redis_url or "", socket_timeout=2)

    def submit(self, job: Job) -> None:
        from kombu.exceptions import OperationalError

        try:
            self.celery.send_task(
                "ghibli.run_job", args=[job.id], queue=registry.JOB_TYPES[job.type].queue, task_id=job.id
            )
        except (OperationalError, OSError) as error:  # kombu wraps Redis' connection errors; OSError: unreachable
            raise QueueUnavailableError(f"the job queue (Redis) is unavailable: {error}") from error

    def has_message(self, job: Job) -> bool:
        """Whether the broker still holds the job's message: waiting in its queue, or taken but unacknowledged."""
        queue = registry.JOB_TYPES[job.type].queue
        needle = job.id.encode()
        # Kombu's Redis transport keeps a list per queue and priority step, and every unacknowledged message in a hash.
        lists = [queue, *(f"{queue}\x06\x16{priority}" for priority in (3, 6, 9))]
        if any(needle in message for key in lists for message in self.redis.lrange(key, 0, -1)):
            return True
        return any(needle in message for message in self.redis.hvals("unacked"))

    def check(self) -> None:
        self.redis.ping()


class EmbeddedJobQueue:
    """Runs the same handlers in threads of this process; no Redis, no Docker."""

    def __init__(self, store: ObjectStore, settings: Settings) -> None:
        self.store, self.settings = store, settings
        self.executor = ThreadPoolExecutor(settings.embedded_workers, thread_name_prefix="job")

    def submit(self, job: Job) -> None:
        self.executor.submit(self._run, job.id)

    def _run(self, job_id: str) -> None:
        for attempt in range(self.settings.task_max_retries + 1):
            try:
                execute_job(job_id, self.store, self.settings)
                return
            except TransientJobError:
                log.warning("job %s hit a transient fault (attempt %d)", job_id, attempt + 1)
                time.sleep(min(2**attempt, 60))
            except Exception:
                log.exception("embedded job %s stopped with an error", job_id)
                return
        job = JobRepository(self.store).get(job_id)
        job.state, job.error = JobState.failed, f"gave up after retries: {job.error}"
        JobRepository(self.store).save(job)

    def resume_unfinished(self) -> int:
        """Requeue jobs a previous process left queued or running; returns how many."""
        repo = JobRepository(self.store)
        pending = [job for job in repo.list() if job.state in (JobState.queued, JobState.running)]
        for job in pending:
            self.submit(job)
        return len(pending)

    def check(self) -> None:
        if self.executor._shutdown:
            raise RuntimeError("embedded executor is shut down")

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=False)


def make_queue(store: ObjectStore, settings: Settings) -> JobQueue:
    if settings.embedded:
        return EmbeddedJobQueue(store, settings)
    return CeleryJobQueue(settings)
