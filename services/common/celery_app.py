"""The one Celery app. Workers: `celery -A services.common.celery_app worker -Q <queue>`.

A single task, `ghibli.run_job`, runs any job type; routing by queue decides which service's
worker gets it, and that worker imports only its own handler.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable

import redis
from celery import Celery, Task
from celery.exceptions import Retry
from celery.signals import worker_ready
from prometheus_client import start_http_server

from services.common.jobs import TransientJobError
from services.common.runner import execute_job
from services.common.settings import get_settings
from services.common.storage import make_store

_settings = get_settings()

celery_app = Celery("ghibli", broker=_settings.redis_url or "memory://")
celery_app.conf.update(
    task_acks_late=True,  # a task killed mid-run stays in the broker and is redelivered
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,  # a long job must not hold a second one hostage
    task_default_queue="default",
    broker_transport_options={
        "visibility_timeout": _settings.broker_visibility_timeout,
        # Sweep for tasks of dead workers often enough that redelivery follows the timeout closely.
        "unacked_restore_interval": max(1.0, min(10.0, _settings.broker_visibility_timeout / 4)),
        "unacked_restore_throttle": 1,
    },
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)

_TRANSIENT = (TransientJobError, ConnectionError, TimeoutError, redis.ConnectionError)


@worker_ready.connect
def _serve_worker_metrics(**_: object) -> None:
    if _settings.metrics_port:
        start_http_server(_settings.metrics_port)


class JobLease:
    """A Redis lock on one job so a redelivered copy never runs beside a live worker."""

    def __init__(self, client: redis.Redis, job_id: str, ttl_s: float) -> None:
        self.client, self.key, self.ttl_ms = client, f"ghibli:lease:{job_id}", int(ttl_s * 1000)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"

    def acquire(self) -> bool:
        taken = self.client.set(self.key, self.owner, nx=True, px=self.ttl_ms)
        return bool(taken) or self.client.get(self.key) == self.owner.encode()

    def renew(self) -> None:
        self.client.set(self.key, self.owner, px=self.ttl_ms)

    def release(self) -> None:
        if self.client.get(self.key) == self.owner.encode():
            self.client.delete(self.key)


@celery_app.task(bind=True, name="ghibli.run_job", max_retries=_settings.task_max_retries)
def run_job(task: Task, job_id: str) -> str:
    settings = get_settings()
    store = make_store(settings)
    lease = JobLease(redis.Redis.from_url(settings.redis_url or ""), job_id, settings.job_lease_seconds)
    if not lease.acquire():
        # Another worker is running it. Look again later: if that worker dies, its lease
        # expires and this copy takes over; if it finishes, the job is terminal by then.
        raise task.retry(countdown=settings.job_lease_seconds / 2, max_retries=None)
    stop = _renew_in_background(lease, settings.job_lease_seconds / 3)
    try:
        return execute_job(job_id, store, settings).state.value
    except Retry:
        raise
    except _TRANSIENT as error:
        raise task.retry(exc=error, countdown=min(2**task.request.retries, 60)) from error
    finally:
        stop()
        lease.release()


def _renew_in_background(lease: JobLease, interval_s: float) -> Callable[[], None]:
    stopped = threading.Event()

    def renew() -> None:
        while not stopped.wait(interval_s):
            # Redis may be restarting; the next renewal retries before the lease runs out.
            with contextlib.suppress(redis.RedisError):
                lease.renew()

    threading.Thread(target=renew, name="lease-renewal", daemon=True).start()
    return stopped.set
