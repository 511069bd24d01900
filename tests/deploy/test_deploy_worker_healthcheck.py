"""The workers' container healthcheck, against a real Celery worker over real Redis."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.deploy.deploy_files import ROOT
from tests.processes import wait_until

pytestmark = pytest.mark.slow


def healthcheck(node: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "worker_healthcheck.py"), node, "2"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_healthy_only_while_its_own_node_answers(
    start_worker: Callable[[str], subprocess.Popen[bytes]], platform_env: dict[str, str]
) -> None:
    worker = start_worker("pipeline")  # the fixture names it pipeline-0@test
    wait_until(lambda: healthcheck("pipeline-0@test", platform_env).returncode == 0, 60, "the worker to answer")

    other = healthcheck("pipeline@not-this-container", platform_env)
    assert other.returncode == 1
    assert "did not answer" in other.stderr

    worker.terminate()
    worker.wait(timeout=30)
    assert healthcheck("pipeline-0@test", platform_env).returncode == 1


def test_usage_error_without_a_queue(platform_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "worker_healthcheck.py")],
        env=platform_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "usage" in result.stderr
