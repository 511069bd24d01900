"""The offline demo pipeline over HTTP, on Celery workers, real Redis and the S3 server, under faults.

Every stage's worker is SIGKILLed while it runs that stage's job, and Redis is restarted in the
middle of the run. The pipeline must still finish, with every artifact present once: no image,
caption, LoRA or picture lost or written twice.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from services.common import registry
from services.common.settings import Settings
from services.common.storage import S3Store
from services.pipeline.demo import MODEL_SETTINGS
from services.pipeline.demo_images import generate_demo_images
from tests.processes import PrivateRedis, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
STAGE_QUEUES = {"crawl": "crawl", "filter": "filter", "caption": "caption", "train": "train", "sample": "infer"}


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    with PrivateRedis(tmp_path) as server:
        yield server


@pytest.fixture
def broker_url(private_redis: PrivateRedis) -> str:
    return private_redis.url


@pytest.fixture
def service_env(demo_models: dict[str, Path]) -> dict[str, str]:
    return {variable: str(demo_models[model]) for variable, model in MODEL_SETTINGS.items()}


def _demo_config(s3_settings: Settings, tmp_path: Path) -> tuple[dict, int]:
    """examples/demo.yaml with its pictures uploaded as a zip; also how many pictures there are."""
    config = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    pictures = tmp_path / "pictures"
    count = generate_demo_images(pictures, config["dataset"]["characters"], per_character=6)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(pictures.rglob("*.*")):
            archive.write(path, path.relative_to(pictures).as_posix())
    key, _ = S3Store(s3_settings).put_content_addressed("uploads", buffer.getvalue(), "zip", "application/zip")
    config["crawl"] = {**config["crawl"], "archive_key": key}
    return config, count


def _status(api_url: str, pipeline_id: str) -> dict:
    return httpx.get(f"{api_url}/v1/pipelines/{pipeline_id}", timeout=10).json()


def test_pipeline_survives_a_killed_worker_in_every_stage_and_a_redis_restart(
    api_url: str,
    start_worker: Callable[[str], subprocess.Popen[bytes]],
    private_redis: PrivateRedis,
    s3_settings: Settings,
    tmp_path: Path,
) -> None:
    config, picture_count = _demo_config(s3_settings, tmp_path)
    accepted = httpx.post(f"{api_url}/v1/pipelines", json=config, timeout=30)
    assert accepted.status_code == 202, accepted.text
    pipeline_id = accepted.json()["pipeline_id"]
    workers = {queue: start_worker(queue) for queue in registry.QUEUES}

    killed: list[str] = []
    for stage, queue in STAGE_QUEUES.items():
        # Wait for the stage's job to run, then kill its worker and start a fresh one.
        def running(stage: str = stage) -> bool:
            status = _status(api_url, pipeline_id)
            job = status["stage_jobs"].get(stage)
            assert status["state"] not in ("failed", "canceled"), status
            return job is not None and job["state"] in ("running", "succeeded")

        wait_until(running, 600, f"stage {stage} to start")
        if _status(api_url, pipeline_id)["stage_jobs"][stage]["state"] == "running":
            workers[queue].send_signal(signal.SIGKILL)
            workers[queue].wait()
            killed.append(stage)
            workers[queue] = start_worker(queue)
        if stage == "caption":
            private_redis.stop()  # queued and unacknowledged tasks must come back from the AOF
            time.sleep(1)
            private_redis.start()

    def finished() -> bool:
        return _status(api_url, pipeline_id)["state"] in ("succeeded", "failed", "canceled")

    wait_until(finished, 900, "the pipeline to finish")
    status = _status(api_url, pipeline_id)
    assert status["state"] == "succeeded", json.dumps(status, indent=1)[:4000]
    # Fast stages may end before they are seen running; most stages must have been hit.
    assert len(killed) >= 3, killed
    for stage in killed:
        assert status["stage_jobs"][stage]["attempts"] >= 2, (stage, status["stage_jobs"][stage])

    store = S3Store(s3_settings)
    record = status["pipeline"]
    dataset_id = record["dataset_id"]
    stage_results = {stage: job["result"] for stage, job in status["stage_jobs"].items()}

    raw_records = list(store.list(f"datasets/{dataset_id}/raw/"))
    assert len(raw_records) == picture_count  # every picture in the zip, once
    manifest = store.get_json(stage_results["filter"]["manifest"])
    kept = manifest["images"]
    assert 0 < len(kept) < picture_count
    assert len({entry["source_sha256"] for entry in kept}) == len(kept)
    assert all(store.exists(entry["key"]) for entry in kept)
    captions = store.get_json(stage_results["caption"]["captions"])
    assert sorted(item["image_key"] for item in captions) == sorted(entry["key"] for entry in kept)
    assert all(item["text"].strip() for item in captions)

    lora_id = stage_results["train"]["lora_id"]
    loras = httpx.get(f"{api_url}/v1/loras", timeout=10).json()
    assert [lora["id"] for lora in loras] == [lora_id]  # a redone training registers no second LoRA
    for key in ("diffusers", "kohya", "loss_curve"):
        assert store.exists(stage_results["train"][key]), key
    validation_grids = stage_results["train"]["validation"]
    assert validation_grids and all(store.exists(key) for key in validation_grids)
    sample = stage_results["sample"]
    assert len(sample["images"]) == len(set(sample["images"])) >= 2
    assert store.exists(sample["grid"]) and store.exists(sample["comparison"])

    report = httpx.get(f"{api_url}/v1/artifacts/{record['report_key']}", timeout=30)
    assert report.status_code == 200 and "Base model vs LoRA" in report.text and "Training loss" in report.text
