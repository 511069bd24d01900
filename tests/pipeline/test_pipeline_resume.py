"""Stop a pipeline, or let a stage fail, then resume: finished stages are not redone."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import yaml

from services.common.jobs import Job, JobRepository, JobState
from services.common.runner import execute_job
from services.common.settings import Settings
from services.common.storage import LocalStore, ObjectStore
from services.pipeline.config import PipelineConfig
from services.pipeline.demo import MODEL_SETTINGS, prepare_demo
from services.pipeline.launch import resume_pipeline, start_pipeline, stop_pipeline
from services.pipeline.records import PipelineRepository

ROOT = Path(__file__).parents[2]


class NoQueue:
    """The test runs each pipeline job itself, in this process."""

    def submit(self, job: Job) -> None:
        del job

    def check(self) -> None:
        return None


@pytest.fixture
def demo_setup(
    tmp_path: Path, demo_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> tuple[PipelineConfig, ObjectStore, Settings]:
    for variable, model in MODEL_SETTINGS.items():
        monkeypatch.setenv(variable, str(demo_models[model]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    store = LocalStore(settings.data_dir / "objects")
    config = PipelineConfig.model_validate(yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text()))
    (tmp_path / "work" / "models").mkdir(parents=True)
    for model, path in demo_models.items():  # reuse the session's models instead of building them again
        (tmp_path / "work" / "models" / model).symlink_to(path)
    return prepare_demo(config, tmp_path / "work", store), store, settings


def _stage_jobs(store: ObjectStore, pipeline_id: str) -> dict[str, Job]:
    record = PipelineRepository(store).get(pipeline_id)
    jobs = JobRepository(store)
    return {name: jobs.get(run.job_id) for name, run in record.stages.items()}


def test_a_failed_stage_is_resumed_without_redoing_the_finished_ones(
    demo_setup: tuple[PipelineConfig, ObjectStore, Settings],
    demo_models: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config, store, settings = demo_setup
    monkeypatch.setenv("GHIBLI_CAPTIONER_MODEL_ID", "/nonexistent/blip")  # the caption stage will fail
    record, job = start_pipeline(config, store, NoQueue())

    failed = execute_job(job.id, store, settings)

    assert failed.state == JobState.failed and "caption" in (failed.error or "")
    before = _stage_jobs(store, record.id)
    assert {name: stage.state for name, stage in before.items()} == {
        "crawl": JobState.succeeded,
        "filter": JobState.succeeded,
        "caption": JobState.failed,
    }

    monkeypatch.setenv("GHIBLI_CAPTIONER_MODEL_ID", str(demo_models["tiny-blip"]))  # fixed
    _, rerun = resume_pipeline(record.id, store, NoQueue())
    finished = execute_job(rerun.id, store, settings)

    assert finished.state == JobState.succeeded, finished.error
    after = _stage_jobs(store, record.id)
    for name in ("crawl", "filter"):  # kept, not run again
        assert after[name].id == before[name].id and after[name].attempts == 1
    assert after["caption"].id != before["caption"].id
    assert all(stage.state == JobState.succeeded for stage in after.values())
    assert finished.result["lora_id"] and store.exists(finished.result["report"])


def test_stop_cancels_the_running_stage_and_resume_continues_from_it(
    demo_setup: tuple[PipelineConfig, ObjectStore, Settings],
) -> None:
    config, store, settings = demo_setup
    config = config.with_stage("train", max_steps=100_000)  # stopped first
    record, job = start_pipeline(config, store, NoQueue())
    runner = threading.Thread(target=execute_job, args=(job.id, store, settings))
    runner.start()

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        train = _stage_jobs(store, record.id).get("train")
        if train is not None and train.state == JobState.running and train.progress.step > 0:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the train stage did not start")
    stop_pipeline(record.id, store)
    runner.join(timeout=120)

    assert not runner.is_alive()
    assert JobRepository(store).get(job.id).state == JobState.canceled
    stopped = _stage_jobs(store, record.id)
    assert stopped["train"].state == JobState.canceled
    assert all(stopped[name].state == JobState.succeeded for name in ("crawl", "filter", "caption"))

    _, rerun = resume_pipeline(record.id, store, NoQueue())
    resumed_record = PipelineRepository(store).get(record.id)
    assert resumed_record.job_ids == [job.id, rerun.id]
    assert JobRepository(store).get(rerun.id).state == JobState.queued
