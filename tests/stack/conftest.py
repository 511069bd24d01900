"""The running compose stack that scripts/stack-test.sh started: its REST endpoints and its compose command.

These tests need that stack; without it (the plain test run) they are skipped with the reason shown.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REQUIRED = ("GHIBLI_STACK_API", "GHIBLI_STACK_INFERENCE", "GHIBLI_STACK_COMPOSE", "GHIBLI_STACK_PICTURES")
TERMINAL = {"succeeded", "failed", "canceled"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if missing:
        reason = f"needs the compose stack that scripts/stack-test.sh starts ({', '.join(missing)} unset)"
        for item in items:
            if Path(str(item.fspath)).parent == Path(__file__).parent:
                item.add_marker(pytest.mark.skip(reason=reason))


@dataclass
class Stack:
    api: httpx.Client
    inference: httpx.Client
    compose_command: list[str]
    pictures: Path
    timings: Path | None

    def compose(self, *args: str, timeout_s: float = 300) -> str:
        result = subprocess.run(
            [*self.compose_command, *args], capture_output=True, text=True, timeout=timeout_s, check=False
        )
        assert result.returncode == 0, f"compose {' '.join(args)}: {result.stderr[-2000:]}"
        return result.stdout

    def record_time(self, part: str, seconds: float) -> None:
        if self.timings:
            with self.timings.open("a") as timings:
                timings.write(f"{part:<28} {seconds:5.0f} s\n")

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.api.get(f"/v1/jobs/{job_id}")
        response.raise_for_status()
        return response.json()

    def wait_for_job(
        self, job_id: str, until: Callable[[dict[str, Any]], bool], timeout_s: float, poll_s: float = 0.2
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                job = self.job(job_id)
            except httpx.TransportError:
                job = {"state": "unknown"}  # the gateway answers again once Redis/S3 are back
            if until(job) or time.monotonic() > deadline:
                return job
            time.sleep(poll_s)

    def worker_log(self, service: str) -> str:
        return self.compose("logs", "--no-color", service)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    token = os.environ.get("GHIBLI_API_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timings = os.environ.get("GHIBLI_STACK_TIMINGS")
    with (
        httpx.Client(base_url=os.environ["GHIBLI_STACK_API"], headers=headers, timeout=120) as api,
        httpx.Client(base_url=os.environ["GHIBLI_STACK_INFERENCE"], headers=headers, timeout=300) as inference,
    ):
        yield Stack(
            api=api,
            inference=inference,
            compose_command=shlex.split(os.environ["GHIBLI_STACK_COMPOSE"]),
            pictures=Path(os.environ["GHIBLI_STACK_PICTURES"]),
            timings=Path(timings) if timings else None,
        )
