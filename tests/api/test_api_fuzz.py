"""Schemathesis walks the gateway's OpenAPI with generated requests: none may get a 5xx."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from services.api.app import create_app
from services.common.jobs import Job
from services.common.settings import Settings


class RecordingQueue:
    """Accepts submissions without running them: this test is about the HTTP layer only."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, job: Job) -> None:
        self.submitted.append(job.id)

    def check(self) -> None:
        return None


@pytest.fixture
def api_schema(tmp_path: Path) -> schemathesis.BaseSchema:
    app = create_app(Settings(_env_file=None, data_dir=tmp_path / "data"), queue=RecordingQueue())
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])
