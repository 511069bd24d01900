"""Jobs over HTTP, run by separate Celery worker processes over real Redis and S3."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from subprocess import Popen

import httpx
from minio import Minio

from services.common.settings import Settings
from tests.support import distinct_images

IMAGE_COUNT = 60


def _upload_dataset(api_url: str, images: list[bytes]) -> str:
    dataset_id = httpx.post(f"{api_url}/v1/datasets", json={"name": "platform"}).json()["id"]
    for start in range(0, len(images), 20):
        batch = [
            ("files", (f"{start + n}.png", data, "image/png")) for n, data in enumerate(images[start : start + 20])
        ]
        outcomes = httpx.post(f"{api_url}/v1/datasets/{dataset_id}/images", files=batch, timeout=60).json()
        assert all(outcome["status"] == "added" for outcome in outcomes), outcomes
    return dataset_id


def _wait_for(api_url: str, job_id: str, done: Callable[[dict], bool], timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = httpx.get(f"{api_url}/v1/jobs/{job_id}").json()
        if done(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not get there in {timeout_s}s: {job}")


def _bucket(settings: Settings) -> tuple[Minio, str]:
    client = Minio(settings.s3_endpoint or "", access_key="test", secret_key="test", secure=False)
    return client, settings.s3_bucket


def test_job_over_http_runs_on_a_worker_process_and_lands_in_s3(
    api_url: str, start_worker: Callable[[str], Popen[bytes]], s3_settings: Settings
) -> None:
    dataset_id = _upload_dataset(api_url, distinct_images(6))
    accepted = httpx.post(f"{api_url}/v1/jobs/filter", json={"dataset_id": dataset_id})
    assert accepted.status_code == 202
    job_id = accepted.json()["job_id"]
    assert httpx.get(f"{api_url}/v1/jobs/{job_id}").json()["state"] == "queued"  # nobody consumes yet

    start_worker("filter")
    job = _wait_for(api_url, job_id, lambda job: job["state"] in ("succeeded", "failed"), 120)
    assert job["state"] == "succeeded", job
    manifest_key = f"datasets/{dataset_id}/filtered/manifest.json"
    client, bucket = _bucket(s3_settings)
    manifest = client.get_object(bucket, manifest_key).read()
    assert len(json.loads(manifest)["images"]) == 6
    assert httpx.get(f"{api_url}/v1/artifacts/{manifest_key}").status_code == 200


def test_a_sigkilled_worker_leaves_the_job_to_be_redelivered_and_finished(
    api_url: str, start_worker: Callable[[str], Popen[bytes]], s3_settings: Settings
) -> None:
    dataset_id = _upload_dataset(api_url, distinct_images(IMAGE_COUNT))
    job_id = httpx.post(f"{api_url}/v1/jobs/filter", json={"dataset_id": dataset_id}).json()["job_id"]

    doomed = start_worker("filter")
    _wait_for(api_url, job_id, lambda job: job["state"] == "running" and job["progress"]["step"] > 0, 120)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    assert httpx.get(f"{api_url}/v1/jobs/{job_id}").json()["state"] == "running"  # the record shows the crash

    start_worker("filter")
    job = _wait_for(api_url, job_id, lambda job: job["state"] in ("succeeded", "failed"), 180)
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2

    client, bucket = _bucket(s3_settings)
    manifest = json.loads(client.get_object(bucket, f"datasets/{dataset_id}/filtered/manifest.json").read())
    kept_sources = [entry["source_sha256"] for entry in manifest["images"]]
    assert len(kept_sources) == IMAGE_COUNT == len(set(kept_sources))  # nothing lost, nothing twice
    clean_objects = [item.object_name for item in client.list_objects(bucket, prefix="images/clean/", recursive=True)]
    assert len(clean_objects) == IMAGE_COUNT
