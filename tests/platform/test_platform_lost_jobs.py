"""No accepted job waits forever: Redis restarted without persistence while jobs wait in its queue.

The gateway and a Celery worker run as their own processes over real S3 and a Redis of the test's own that
keeps nothing on disk. Jobs are queued while no worker serves the queue, Redis is restarted (their
messages are gone), then a worker starts: every job must still end, once.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from services.common.jobs import Job, JobState
from services.common.requeue import jobs_to_resend
from tests.processes import PrivateRedis, wait_until
from tests.support import distinct_images

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.fixture
def volatile_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    with PrivateRedis(tmp_path, persistent=False) as server:
        yield server


@pytest.fixture
def broker_url(volatile_redis: PrivateRedis) -> str:
    return volatile_redis.url


@pytest.fixture
def service_env() -> dict[str, str]:
    return {"GHIBLI_REQUEUE_AFTER_SECONDS": "2"}


@pytest.mark.slow
def test_jobs_whose_messages_redis_lost_are_sent_again_and_finish_once(
    api_url: str,
    volatile_redis: PrivateRedis,
    start_worker: Callable[[str], subprocess.Popen[bytes]],
) -> None:
    with httpx.Client(base_url=api_url, timeout=60) as client:
        dataset_id = client.post("/v1/datasets", json={"name": "lost"}).json()["id"]
        files = [("files", (f"{index}.png", data)) for index, data in enumerate(distinct_images(4))]
        assert client.post(f"/v1/datasets/{dataset_id}/images", files=files).status_code == 200
        job_ids = [
            client.post("/v1/jobs/filter", json={"dataset_id": dataset_id, "min_side": 16}).json()["job_id"]
            for _ in range(3)
        ]
        volatile_redis.stop()  # the queued messages go with it: nothing was written to disk
        volatile_redis.start()
        start_worker("filter")

        def all_ended() -> bool:
            states = [client.get(f"/v1/jobs/{job_id}").json()["state"] for job_id in job_ids]
            return all(state in ("succeeded", "failed") for state in states)

        wait_until(all_ended, 120, "the lost jobs to be sent again and run")
        jobs = [client.get(f"/v1/jobs/{job_id}").json() for job_id in job_ids]
        assert [job["state"] for job in jobs] == ["succeeded"] * 3, [job.get("error") for job in jobs]
        assert all(job["attempts"] == 1 for job in jobs)  # each ran once, though it may have been sent twice


def job(state: JobState, created_minutes_ago: float, heartbeat_minutes_ago: float | None = None) -> Job:
    record = Job(id=f"filter-{state.value}-{created_minutes_ago}", type="filter", state=state)
    record.created_at = AT - created_minutes_ago * MINUTE
    if heartbeat_minutes_ago is not None:
        record.heartbeat_at = AT - heartbeat_minutes_ago * MINUTE
    return record


def test_only_old_silent_jobs_missing_from_the_broker_are_resent() -> None:
    lost_queued, young_queued = job(JobState.queued, 10), job(JobState.queued, 1)
    still_in_broker = job(JobState.queued, 10)
    still_in_broker.id = "filter-in-broker"
    silent_running, live_running = job(JobState.running, 30, 10), job(JobState.running, 30, 1)
    finished = job(JobState.succeeded, 60)
    chosen = jobs_to_resend(
        [lost_queued, young_queued, still_in_broker, silent_running, live_running, finished],
        has_message=lambda candidate: candidate.id == "filter-in-broker",
        at=AT,
        queued_for=5 * MINUTE,
        silent_for=5 * MINUTE,
    )
    assert chosen == [lost_queued, silent_running]
