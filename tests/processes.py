"""Fixtures for real processes: the gateway under uvicorn and Celery workers, over real Redis and S3.

A conftest may override `broker_url` (e.g. a private Redis it restarts) and `service_env` (model
paths and other settings the workers need).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from services.common.registry import worker_command
from services.common.settings import Settings
from tests.support import free_port

ROOT = Path(__file__).parents[2]


@pytest.fixture
def broker_url(redis_url: str) -> str:
    redis.Redis.from_url(redis_url).flushdb()  # the test database only: no stale tasks or leases
    return redis_url


@pytest.fixture
def service_env() -> dict[str, str]:
    return {}


@pytest.fixture
def platform_env(s3_settings: Settings, broker_url: str, service_env: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "GHIBLI_S3_ENDPOINT": s3_settings.s3_endpoint or "",
        "GHIBLI_S3_BUCKET": s3_settings.s3_bucket,
        "GHIBLI_DATA_DIR": str(s3_settings.data_dir),
        "GHIBLI_REDIS_URL": broker_url,
        "GHIBLI_JOB_LEASE_SECONDS": "3",
        "GHIBLI_BROKER_VISIBILITY_TIMEOUT": "5",
        "GHIBLI_MAX_UPLOAD_BYTES": str(20 * 1024 * 1024),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        **service_env,
    }


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"gave up waiting for {what}")


@pytest.fixture
def api_url(platform_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path / "api.log", "wb")  # noqa: SIM115 - closed after the process ends
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "services.api.app:create_app", "--port", str(port)],
        env=platform_env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited: {(tmp_path / 'api.log').read_text()[-3000:]}")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, 30, "the API to start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture
def start_worker(platform_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(queue: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"worker-{queue}-{len(processes)}.log", "wb")  # noqa: SIM115
        hostname = f"{queue}-{len(processes)}@test"
        process = subprocess.Popen(
            worker_command(queue, hostname, "--without-gossip", "--without-mingle", "--without-heartbeat"),
            env=platform_env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


class PrivateRedis:
    """A Redis of a test's own, to restart mid-run: with an append-only file, or keeping nothing."""

    def __init__(self, directory: Path, persistent: bool = True) -> None:
        self.directory, self.port, self.persistent = directory, free_port(), persistent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(self.directory), "--appendonly", "yes" if self.persistent else "no",
             "--appendfsync", "always"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(self._answers, 10, "the private Redis to start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False
