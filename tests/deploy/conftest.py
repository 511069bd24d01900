"""The parsed `docker compose config` that the deployment tests read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deploy.deploy_files import run_compose_config


@pytest.fixture(scope="session")
def compose_config() -> dict[str, Any]:
    """`docker compose config` of the real file, as JSON; it must validate."""
    result = run_compose_config("--format", "json", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
