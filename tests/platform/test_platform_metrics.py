"""Prometheus metrics: the gateway's HTTP latency and queue depth, a worker's job durations and images/s."""

from __future__ import annotations

import time
from collections.abc import Callable
from subprocess import Popen

import httpx
import pytest

from tests.support import distinct_images, free_port

METRICS_PORT = free_port()


@pytest.fixture
def service_env() -> dict[str, str]:
    return {"GHIBLI_METRICS_PORT": str(METRICS_PORT)}


def _scrape(url: str, wanted: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        try:
            text = httpx.get(url, timeout=2).text
        except httpx.TransportError:
            text = ""
        if wanted in text:
            return text
        time.sleep(0.3)
    raise AssertionError(f"{wanted!r} never appeared at {url}:\n{text[-2000:]}")


def test_gateway_and_worker_serve_their_metrics(api_url: str, start_worker: Callable[[str], Popen[bytes]]) -> None:
    dataset_id = httpx.post(f"{api_url}/v1/datasets", json={"name": "metrics"}).json()["id"]
    files = [("files", (f"{n}.png", data, "image/png")) for n, data in enumerate(distinct_images(3))]
    httpx.post(f"{api_url}/v1/datasets/{dataset_id}/images", files=files, timeout=60)
    httpx.post(f"{api_url}/v1/jobs/filter", json={"dataset_id": dataset_id})

    gateway = httpx.get(f"{api_url}/metrics/").text
    assert 'ghibli_queue_depth{queue="filter"} 1.0' in gateway  # submitted, no worker yet
    assert 'ghibli_http_request_duration_seconds_count{method="POST",route="/v1/jobs/filter",status="202"}' in gateway

    start_worker("filter")
    worker = _scrape(f"http://127.0.0.1:{METRICS_PORT}/", 'ghibli_job_duration_seconds_count{state="succeeded"')
    assert 'ghibli_job_duration_seconds_count{state="succeeded",type="filter"} 1.0' in worker
    assert 'ghibli_images_processed_total{stage="filter"} 3.0' in worker
