"""Schemathesis walks the gateway's OpenAPI, with the token set, checking what the spec promises.

Every answer must be documented (status code, content type, body schema, headers), a request without the
token or with a wrong one is refused, a 405 lists the path's methods. Two checks are left out, each for a
known gap: schema-valid bodies that a cross-field rule refuses (a caption job's `min_new_tokens` above
`max_new_tokens`, a pipeline stage's free-form params) and schema-violating values pydantic coerces
(a boolean where a number is due).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from services.api.app import create_app
from services.common.jobs import Job
from services.common.settings import Settings

TOKEN = "fuzz-token"
KNOWN_GAPS = [positive_data_acceptance, negative_data_rejection]  # see the module docstring


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
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", api_token=TOKEN)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(settings, queue=RecordingQueue()))


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_gateway_answers_as_its_spec_says(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, excluded_checks=KNOWN_GAPS)
