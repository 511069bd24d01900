"""The offline pipeline through the REST API of the running compose stack, and faults on its containers.

Each stage runs in its own container (its Celery log names the job); the LoRA the trainer container made is
served by the inference container on /sdapi/v1/txt2img; the run's report downloads. Then the filter and the
trainer containers are SIGKILLed mid-job and started again: the jobs finish once, nothing lost, nothing
duplicated. Redis is restarted while the pipeline runs: the pipeline still finishes (AOF).
"""

from __future__ import annotations

import base64
import io
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from tests.stack.conftest import TERMINAL, Stack

ROOT = Path(__file__).parents[2]
STAGE_SERVICES = {
    "crawl": "crawler",
    "filter": "filter",
    "caption": "captioner",
    "train": "trainer",
    "sample": "inference-worker",
}
KILL_TRIES = 3


def create_dataset(stack: Stack, name: str) -> str:
    response = stack.api.post("/v1/datasets", json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def upload(stack: Stack, dataset_id: str, paths: list[Path]) -> list[dict[str, Any]]:
    outcomes = []
    for start in range(0, len(paths), 20):
        files = [("files", (path.name, path.read_bytes())) for path in paths[start : start + 20]]
        response = stack.api.post(f"/v1/datasets/{dataset_id}/images", files=files)
        assert response.status_code == 200, response.text
        outcomes += response.json()
    return outcomes


def submit(stack: Stack, job_type: str, params: dict[str, Any]) -> str:
    response = stack.api.post(f"/v1/jobs/{job_type}", json=params)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def png_size(encoded: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(encoded))).size


@pytest.fixture(scope="module")
def pipeline_run(stack: Stack) -> dict[str, Any]:
    """Pictures uploaded and crawled, then crawl → filter → caption → train → sample; Redis restarted mid-run."""
    started = time.monotonic()
    dataset_id = create_dataset(stack, "stack-demo")
    uploaded = upload(stack, dataset_id, sorted((stack.pictures / "Kiki").iterdir()))
    assert all(outcome["status"] == "added" for outcome in uploaded), uploaded
    crawled = sorted(path.name for path in (stack.pictures / "Totoro").iterdir())

    config = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    config["name"] = "stack-demo"
    config["dataset"] = {"id": dataset_id}
    config["crawl"] = {"search": False, "urls": [f"http://pictures:8080/Totoro/{name}" for name in crawled]}
    response = stack.api.post("/v1/pipelines", json=config)
    assert response.status_code == 202, response.text
    pipeline_id = response.json()["pipeline_id"]

    redis_back_at: datetime | None = None
    deadline = time.monotonic() + 1200
    while time.monotonic() < deadline:
        status = stack.api.get(f"/v1/pipelines/{pipeline_id}").json()
        if status["state"] in TERMINAL:
            break
        if redis_back_at is None and "filter" in status["stage_jobs"]:
            stack.compose("restart", "redis")
            redis_back_at = datetime.now(UTC)
        time.sleep(0.5)
    stack.record_time("pipeline over REST", time.monotonic() - started)
    return {
        "status": status,
        "dataset_id": dataset_id,
        "uploaded": len(uploaded),
        "crawled": len(crawled),
        "redis_back_at": redis_back_at,
    }


def test_both_http_services_want_the_token(stack: Stack) -> None:
    wrong = {"Authorization": "Bearer wrong"}
    assert stack.api.get("/v1/jobs", headers=wrong).status_code == 401
    assert stack.inference.get("/sdapi/v1/sd-models", headers=wrong).status_code == 401
    assert stack.inference.post("/sdapi/v1/txt2img", json={"prompt": "x"}, headers=wrong).status_code == 401
    assert stack.inference.get("/healthz", headers=wrong).status_code == 200


def test_the_pipeline_runs_through_every_container(stack: Stack, pipeline_run: dict[str, Any]) -> None:
    status = pipeline_run["status"]
    assert status["state"] == "succeeded", {name: job.get("error") for name, job in status["stage_jobs"].items()}
    jobs = status["stage_jobs"]
    # Redis was restarted mid-run: the later stages were queued through it after it came back (AOF kept the rest).
    assert pipeline_run["redis_back_at"] is not None, "the pipeline ended before Redis could be restarted"
    assert datetime.fromisoformat(jobs["sample"]["created_at"]) > pipeline_run["redis_back_at"]
    assert set(jobs) == set(STAGE_SERVICES)
    for stage, service in STAGE_SERVICES.items():
        assert jobs[stage]["state"] == "succeeded", (stage, jobs[stage].get("error"))
        assert f"[{jobs[stage]['id']}]" in stack.worker_log(service), f"{stage} did not run in {service}"
    pipeline_jobs = status["pipeline"]["job_ids"]
    assert any(f"[{job_id}]" in stack.worker_log("pipeline-worker") for job_id in pipeline_jobs)

    crawl, filtered = jobs["crawl"]["result"], jobs["filter"]["result"]
    assert crawl["downloaded"] == pipeline_run["crawled"], crawl
    raw = stack.api.get(f"/v1/datasets/{pipeline_run['dataset_id']}").json()["raw_images"]
    assert raw == pipeline_run["uploaded"] + pipeline_run["crawled"]
    assert filtered["kept"] + filtered["dropped"] == raw
    # The demo's blurred and captioned pictures are copies of clean ones: dropped as near duplicates, the
    # clean copy kept, with what is wrong with them named (the blur measure and the text model ran here).
    entries = stack.api.get(f"/v1/artifacts/{filtered['report']}").json()["entries"]
    problems = {problem for entry in entries if entry["status"] == "dropped" for problem in entry["problems"]}
    assert {"blurry", "text"} <= problems | set(filtered["reasons"]), (filtered["reasons"], problems)
    assert jobs["caption"]["result"]["count"] == filtered["kept"]


def test_the_inference_container_serves_the_trained_lora(stack: Stack, pipeline_run: dict[str, Any]) -> None:
    train = pipeline_run["status"]["stage_jobs"]["train"]["result"]
    assert stack.inference.post("/sdapi/v1/refresh-loras").status_code == 200
    names = [lora["name"] for lora in stack.inference.get("/sdapi/v1/loras").json()]
    assert train["name"] in names
    request = {"prompt": f"a girl in a meadow <lora:{train['name']}:1>", "steps": 2, "width": 64, "height": 64}
    response = stack.inference.post("/sdapi/v1/txt2img", json={**request, "seed": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [png_size(image) for image in body["images"]] == [(64, 64)]
    assert train["name"] in body["info"]


def test_the_report_downloads(stack: Stack, pipeline_run: dict[str, Any]) -> None:
    report_key = pipeline_run["status"]["pipeline"]["report_key"]
    response = stack.api.get(f"/v1/artifacts/{report_key}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "stack-demo" in response.text


def kill_mid_job(stack: Stack, service: str, submit_job: Any, is_midway: Any) -> str:
    """Submit jobs until one is SIGKILLed in `service` while running; start the container again."""
    for _ in range(KILL_TRIES):
        job_id = submit_job()
        job = stack.wait_for_job(job_id, lambda job: is_midway(job) or job["state"] in TERMINAL, timeout_s=600)
        if job["state"] in TERMINAL:
            continue  # finished before it could be hit: try a fresh job
        stack.compose("kill", "-s", "SIGKILL", service)
        if stack.job(job_id)["state"] in TERMINAL:
            stack.compose("start", service)
            continue
        stack.compose("start", service)
        return job_id
    pytest.fail(f"no {service} job was still running when the container was killed ({KILL_TRIES} tries)")


def test_a_filter_killed_mid_job_finishes_it_once(stack: Stack, tmp_path: Path) -> None:
    from services.pipeline.demo_images import generate_demo_images

    characters = [{"character": f"c{index}", "movie": "m"} for index in range(6)]
    generate_demo_images(tmp_path, characters, per_character=30)
    dataset_id = create_dataset(stack, "stack-filter-fault")
    added = [
        outcome for outcome in upload(stack, dataset_id, sorted(tmp_path.rglob("*.*"))) if outcome["status"] == "added"
    ]

    started = time.monotonic()
    job_id = kill_mid_job(
        stack,
        "filter",
        lambda: submit(stack, "filter", {"dataset_id": dataset_id, "size": 512}),
        lambda job: job["state"] == "running",
    )
    job = stack.wait_for_job(job_id, lambda job: job["state"] in TERMINAL, timeout_s=600)
    stack.record_time("filter killed and resumed", time.monotonic() - started)
    assert job["state"] == "succeeded", job.get("error")
    assert job["attempts"] >= 2
    result = job["result"]
    assert result["kept"] + result["dropped"] == len(added)  # nothing lost, nothing counted twice
    manifest = stack.api.get(f"/v1/artifacts/{result['manifest']}").json()
    assert manifest["counts"]["input"] == len(added)
    kept_sources = [image["source_sha256"] for image in manifest["images"]]
    assert len(kept_sources) == len(set(kept_sources)) == result["kept"]


def test_a_trainer_killed_mid_job_resumes_from_its_checkpoint(stack: Stack, pipeline_run: dict[str, Any]) -> None:
    params = {
        "dataset_id": pipeline_run["dataset_id"],
        "name": "stack-train-fault",
        "rank": 4,
        "resolution": 64,
        "batch_size": 2,
        "max_steps": 160,
        "checkpoint_every": 20,
        "validation_every": 1000,
        "validation_inference_steps": 2,
        "validation_seeds": [0],
    }
    started = time.monotonic()
    names = iter(f"stack-train-fault-{attempt}" for attempt in range(KILL_TRIES))
    job_id = kill_mid_job(
        stack,
        "trainer",
        lambda: submit(stack, "train", {**params, "name": next(names)}),
        lambda job: job["state"] == "running" and job["progress"]["step"] >= 30,
    )
    job = stack.wait_for_job(job_id, lambda job: job["state"] in TERMINAL, timeout_s=900)
    stack.record_time("trainer killed and resumed", time.monotonic() - started)
    assert job["state"] == "succeeded", job.get("error")
    assert job["attempts"] >= 2
    assert job["result"]["steps"] == params["max_steps"]
    assert job["result"]["resumed_from_step"] >= params["checkpoint_every"]
    loras = [lora for lora in stack.api.get("/v1/loras").json() if lora["job_id"] == job_id]
    assert len(loras) == 1, loras
