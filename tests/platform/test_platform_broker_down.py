"""Submissions while Redis cannot be reached: 503 with a message, and no job left `queued` forever.

The gateway runs as its own process over real S3, with its broker pointed at a port nobody listens on.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def broker_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there: the broker is down


def test_a_job_submitted_while_the_broker_is_down_is_refused_and_not_recorded(api_url: str) -> None:
    with httpx.Client(base_url=api_url, timeout=60) as client:
        dataset_id = client.post("/v1/datasets", json={"name": "broker-down"}).json()["id"]
        response = client.post("/v1/jobs/filter", json={"dataset_id": dataset_id})
        assert response.status_code == 503, response.text
        assert "unavailable" in response.json()["detail"]
        assert response.headers["retry-after"] == "10"
        assert client.get("/v1/jobs").json() == []  # no record that nothing would ever run


def test_a_pipeline_started_while_the_broker_is_down_fails_its_run_visibly(api_url: str) -> None:
    with httpx.Client(base_url=api_url, timeout=60) as client:
        response = client.post("/v1/pipelines", json={"name": "broker-down", "crawl": {"search": False}})
        assert response.status_code == 503, response.text
        jobs = client.get("/v1/jobs").json()
        assert [(job["type"], job["state"]) for job in jobs] == [("pipeline", "failed")]
        assert "unavailable" in jobs[0]["error"]
