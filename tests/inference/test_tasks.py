"""The `infer` job as the pipeline's sample stage runs it: lora_id shorthand, comparison grid, re-runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from services.common.jobs import JobRepository, JobState
from services.common.runner import execute_job
from services.common.settings import Settings
from services.common.storage import ObjectStore
from tests.inference.conftest import register_lora


def run(store: ObjectStore, settings: Settings, params: dict) -> dict:
    job = JobRepository(store).create("infer", params)
    finished = execute_job(job.id, store, settings)
    assert finished.state == JobState.succeeded, finished.error
    return finished.result


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_sample_stage_job_with_comparison_grid(
    request: pytest.FixtureRequest, backend: str, infer_env: None, tiny_sd_path: Path
) -> None:
    store: ObjectStore = request.getfixturevalue(f"{backend}_store")
    settings: Settings = request.getfixturevalue(f"{backend}_settings")
    register_lora(store, tiny_sd_path, "lora-s", "spirited", seed=3)
    params = {"prompt": "a bathhouse", "seeds": [1, 2, 3], "steps": 2, "width": 32, "height": 32}
    result = run(store, settings, {**params, "lora_id": "lora-s", "lora_scale": 0.8, "compare_base": True})

    assert len(result["images"]) == 3 and result["seeds"] == [1, 2, 3]
    assert result["loras"] == [{"id": "lora-s", "scale": 0.8}]
    first = Image.open(store.download(result["images"][0], settings.data_dir / "first.png"))
    assert "<lora:spirited:0.8>" in first.info["parameters"] and "Seed: 1," in first.info["parameters"]
    comparison = Image.open(store.download(result["comparison"], settings.data_dir / "comparison.png"))
    grid = Image.open(store.download(result["grid"], settings.data_dir / "grid.png"))
    assert comparison.width == grid.width and comparison.height > grid.height  # a base row above the LoRA row

    again = run(store, settings, {**params, "lora_id": "lora-s", "lora_scale": 0.8, "compare_base": True})
    assert again == result  # content-addressed: a re-run writes the same keys
    assert len(list(store.list("images/generated/"))) == 3 + 2

    without_lora = run(store, settings, {**params, "lora_id": None})
    assert without_lora["comparison"] is None and without_lora["loras"] == []
    assert set(without_lora["images"]).isdisjoint(result["images"])


def test_unknown_lora_fails_the_job_with_its_name(infer_env: None, local_store: ObjectStore, local_settings) -> None:
    job = JobRepository(local_store).create("infer", {"prompt": "x", "lora_id": "ghost", "steps": 1})
    finished = execute_job(job.id, local_store, local_settings)
    assert finished.state == JobState.failed and "no LoRA 'ghost'" in (finished.error or "")
