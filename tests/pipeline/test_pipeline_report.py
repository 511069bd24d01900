"""The run report gathers every stage's artifacts (per the stage data contracts) into one HTML page."""

from __future__ import annotations

import re

from services.common.datasets import Character, DatasetRepository
from services.common.jobs import JobRepository, JobState, now
from services.common.storage import ObjectStore
from services.pipeline.config import PipelineConfig
from services.pipeline.records import PipelineRepository, StageRun
from services.pipeline.report import write_report
from tests.support import png_bytes


def _finished_job(jobs: JobRepository, job_type: str, result: dict) -> str:
    job = jobs.create(job_type, {})
    job.state, job.started_at, job.finished_at, job.result = JobState.succeeded, now(), now(), result
    jobs.save(job)
    return job.id


def test_report_shows_counts_drops_captions_loss_and_grids(local_store: ObjectStore) -> None:
    store = local_store
    characters = [Character(character="Kiki", movie="Kiki's Delivery Service")]
    dataset = DatasetRepository(store).create("demo", characters)
    datasets = DatasetRepository(store)
    raw = [
        datasets.add_raw_image(dataset.id, png_bytes((n * 40, 90, 30)), f"demo:{n}", character="Kiki")[0]
        for n in range(3)
    ]
    clean_key = store.put_bytes("images/clean/ab/ab.png", png_bytes((1, 2, 3)), "image/png")
    store.put_json(
        f"datasets/{dataset.id}/filtered/manifest.json",
        {"images": [{"key": clean_key, "source_sha256": raw[0].sha256, "character": "Kiki"}]},
    )
    store.put_json(
        f"datasets/{dataset.id}/filtered/report.json",
        [
            {"status": "kept", "source_key": raw[0].key},
            {"status": "dropped", "reason": "blurry", "source_key": raw[1].key},
            {"status": "dropped", "reason": "near_duplicate", "source_key": raw[2].key, "duplicate_of": raw[0].sha256},
        ],
    )
    store.put_json(
        f"datasets/{dataset.id}/captions/captions.json",
        [{"file_name": "ab.png", "image_key": clean_key, "text": "a girl in a dark blue dress flying over a town"}],
    )
    store.put_json("loras/l1/loss.json", [{"step": step, "loss": 1 / (step + 1)} for step in range(20)])
    grid_key = store.put_bytes("loras/l1/validation/step-10.png", png_bytes(size=(256, 128)), "image/png")

    jobs = JobRepository(store)
    upstream = {
        "filter": {
            "manifest": f"datasets/{dataset.id}/filtered/manifest.json",
            "report": f"datasets/{dataset.id}/filtered/report.json",
        },
        "caption": {"captions": f"datasets/{dataset.id}/captions/captions.json"},
        "train": {"lora_id": "l1", "loss_curve": "loras/l1/loss.json", "validation": [grid_key]},
        "sample": {"grid": grid_key, "comparison": grid_key},
    }
    config = PipelineConfig(name="demo", crawl=None, sample={"prompt": "a meadow", "compare_base": True})
    record = PipelineRepository(store).create(config, dataset.id)
    for stage in config.active_stages():
        record.stages[stage.name] = StageRun(
            job_id=_finished_job(jobs, stage.job_type, upstream[stage.name]), state=JobState.succeeded
        )

    page = store.get_bytes(write_report(store, record, upstream)).decode()

    assert "<td>collected</td><td>3</td>" in page
    assert "<td>kept by the filter</td><td>1</td>" in page
    assert "<td>Kiki</td><td>3</td><td>1</td>" in page
    assert "blurry (1)" in page and "near_duplicate (1)" in page
    assert "a girl in a dark blue dress flying over a town" in page
    assert 'aria-label="loss curve"' in page
    assert "step-10.png" in page and "Base model vs LoRA" in page
    # Self-contained: every picture is inlined, nothing is fetched from elsewhere.
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 5  # 2 drops, 1 caption, 2 grids
    assert 'src="http' not in page


def test_report_of_a_run_with_skipped_stages_still_renders(local_store: ObjectStore) -> None:
    dataset = DatasetRepository(local_store).create("empty")
    config = PipelineConfig(name="only-filter", crawl=None, filter={}, caption=None, train=None, sample=None)
    record = PipelineRepository(local_store).create(config, dataset.id)

    page = local_store.get_bytes(write_report(local_store, record, {"filter": {}})).decode()

    assert "<td>collected</td><td>0</td>" in page
    assert "Training loss" not in page
