"""Trainer tests on the tiny SD pipeline (random weights, 32 px, a handful of steps, CPU)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import typer
from pydantic import ValidationError
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

from services.common.jobs import JobCanceledError, JobRepository, JobState
from services.common.loras import LoraRepository
from services.common.runner import execute_job
from services.common.settings import Settings
from services.common.storage import ObjectStore, make_store
from services.trainer.cli import register
from services.trainer.core import (
    LatentSource,
    SDComponents,
    StepReport,
    TrainOutcome,
    TrainSpec,
    diffusion_loss,
    train,
)
from services.trainer.data import load_examples
from services.trainer.launch import run_distributed
from services.trainer.params import TrainParams
from tests.trainer.conftest import store_captioned_dataset, tiny_params

ROOT = Path(__file__).parents[2]


class RecordedEvents:
    def __init__(self) -> None:
        self.steps: list[StepReport] = []
        self.checkpoints: list[int] = []
        self.validations: list[int] = []

    def on_step(self, report: StepReport) -> None:
        self.steps.append(report)

    def on_checkpoint(self, step: int, path: Path) -> None:
        assert path.is_file()
        self.checkpoints.append(step)

    def on_validation(self, step: int, path: Path) -> None:
        assert path.is_file()
        self.validations.append(step)


def _pipeline(model: Path, lora: Path | None = None) -> Any:
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(model, safety_checker=None)
    pipeline.set_progress_bar_config(disable=True)
    if lora is not None:
        pipeline.load_lora_weights(lora.parent, weight_name=lora.name)
    return pipeline


def _fixed_loss(pipeline: Any, folder: Path, params: TrainParams) -> float:
    """The training objective on the whole set with fixed noise and timesteps (comparable across models)."""
    from diffusers import DDPMScheduler

    examples = load_examples(folder)
    scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
    models = SDComponents(pipeline.tokenizer, pipeline.text_encoder, pipeline.vae, pipeline.unet, scheduler)
    source = LatentSource(examples, models, params, torch.device("cpu"))
    mean, std, text = source.batch(list(range(len(examples))), [False] * len(examples))
    losses = []
    with torch.no_grad():
        for seed in range(16):
            generator = torch.Generator().manual_seed(seed)
            scaling = pipeline.vae.config.scaling_factor
            losses.append(diffusion_loss(pipeline.unet, scheduler, params, mean, std, text, scaling, generator).item())
    return sum(losses) / len(losses)


@pytest.fixture(scope="module")
def trained(
    tiny_sd_path: Path, captioned_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainParams, TrainOutcome, RecordedEvents]:
    params = tiny_params(max_steps=40, learning_rate=5e-3, batch_size=4, random_flip=False, validation_every=20)
    events = RecordedEvents()
    spec = TrainSpec(
        params=params,
        base_model=str(tiny_sd_path),
        dataset_dir=captioned_folder,
        work_dir=tmp_path_factory.mktemp("trained"),
        lora_name="tiny-ghibli",
        metadata={"dataset_id": "tiny"},
    )
    return params, train(spec, events), events


def test_training_lowers_the_loss_on_a_tiny_overfit_set(
    trained: tuple[TrainParams, TrainOutcome, RecordedEvents], tiny_sd_path: Path, captioned_folder: Path
) -> None:
    params, outcome, events = trained
    before = _fixed_loss(_pipeline(tiny_sd_path), captioned_folder, params)
    after = _fixed_loss(_pipeline(tiny_sd_path, outcome.diffusers_path), captioned_folder, params)
    assert after < before * 0.9, (before, after)
    assert [report.step for report in events.steps] == list(range(1, 41))
    assert events.steps[-1].eta_s == 0 and events.steps[0].it_per_s > 0
    assert events.checkpoints == [3 * n for n in range(1, 14)] + [40]
    assert events.validations == [20, 40]
    curve = json.loads(outcome.loss_curve_json.read_text())
    assert [point["step"] for point in curve] == list(range(1, 41))
    assert outcome.loss_curve_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_kohya_file_gives_the_same_unet_and_images_as_the_diffusers_file(
    trained: tuple[TrainParams, TrainOutcome, RecordedEvents], tiny_sd_path: Path
) -> None:
    params, outcome, _ = trained
    kohya = load_file(str(outcome.kohya_path))
    suffixes = (".lora_down.weight", ".lora_up.weight", ".alpha")
    assert all(key.startswith("lora_unet_") and key.endswith(suffixes) for key in kohya)
    assert any(key.endswith("_attn2_to_out_0.lora_up.weight") for key in kohya)
    assert {kohya[key].item() for key in kohya if key.endswith(".alpha")} == {params.lora_alpha}
    with safe_open(str(outcome.kohya_path), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["ss_network_dim"] == "4" and metadata["base_model"] == str(tiny_sd_path)
    assert metadata["steps"] == "40" and metadata["dataset_id"] == "tiny"

    base, with_diffusers, with_kohya = (
        _pipeline(tiny_sd_path, lora) for lora in (None, outcome.diffusers_path, outcome.kohya_path)
    )
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn((2, 4, 4, 4), generator=generator)
    text = torch.randn((2, 77, 32), generator=generator)
    timesteps = torch.tensor([10, 700])
    with torch.no_grad():
        outputs = [pipe.unet(latents, timesteps, text).sample for pipe in (base, with_diffusers, with_kohya)]
    torch.testing.assert_close(outputs[2], outputs[1], rtol=1e-5, atol=1e-6)
    assert (outputs[1] - outputs[0]).abs().max() > 1e-3  # the LoRA does change the UNet

    def image(pipe: Any) -> Any:
        seeded = torch.Generator().manual_seed(3)
        return pipe("a red square", num_inference_steps=2, height=32, width=32, generator=seeded, output_type="np")

    assert abs(image(with_kohya).images - image(with_diffusers).images).max() < 1e-4


def test_cache_and_options_reproduce_the_uncached_loss_curve(
    tiny_sd_path: Path, captioned_folder: Path, tmp_path: Path
) -> None:
    """Latent/text cache, grad checkpointing: same numbers; min-SNR, noise offset, v-prediction, epochs run."""
    options = {
        "snr_gamma": 5.0,
        "noise_offset": 0.05,
        "prediction_type": "v_prediction",
        "center_crop": False,
        "gradient_accumulation_steps": 2,
        "epochs": 3,
        "validation_every": None,
        "lr_scheduler": "cosine",
        "lr_warmup_steps": 1,
    }
    curves, weights = [], []
    for cache_latents, gradient_checkpointing in ((True, False), (False, True)):
        params = tiny_params(cache_latents=cache_latents, gradient_checkpointing=gradient_checkpointing, **options)
        with_events = RecordedEvents()
        spec = TrainSpec(
            params=params,
            base_model=str(tiny_sd_path),
            dataset_dir=captioned_folder,
            work_dir=tmp_path / f"cache-{cache_latents}",
            lora_name="options",
        )
        outcome = train(spec, with_events)
        assert outcome.steps == 3  # 4 images / (batch 2 × accumulation 2) = 1 step per epoch
        curves.append(json.loads(outcome.loss_curve_json.read_text()))
        weights.append(load_file(str(outcome.diffusers_path)))
    assert [point["step"] for point in curves[0]] == [1, 2, 3]
    assert all(weights[1][key].abs().max() > 0 for key in weights[1] if ".lora.up." in key)
    for key in weights[0]:  # gradients flow through the checkpointed UNet exactly as without it
        torch.testing.assert_close(weights[1][key], weights[0][key], rtol=1e-3, atol=1e-6)
    for cached, uncached in zip(*curves, strict=True):
        assert cached["loss"] == pytest.approx(uncached["loss"], rel=1e-4)
        assert cached["lr"] == pytest.approx(uncached["lr"])


CRASHING_WORKER = """
import sys, time
from pathlib import Path
from services.common.runner import execute_job
from services.common.settings import Settings
from services.common.storage import make_store
from services.trainer import tasks

save = tasks.CheckpointStore.save

def save_then_hang(self, step, path):
    save(self, step, path)
    time.sleep(600)  # the test SIGKILLs the worker here, right after its first checkpoint reached the store

tasks.CheckpointStore.save = save_then_hang
settings = Settings(_env_file=None)  # store and data dir from the GHIBLI_* environment the test sets
execute_job(sys.argv[1], make_store(settings), settings)
"""


def _weights(store: ObjectStore, key: str, tmp_path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(store.download(key, tmp_path / key.replace("/", "_"))))


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Bit-identical floats need the same reduction order: as many threads here as in the worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("backend", ["local", "s3"])
def test_sigkilled_job_resumes_from_its_checkpoint_with_identical_result(
    backend: str, request: pytest.FixtureRequest, tiny_sd_path: Path, tmp_path: Path
) -> None:
    settings: Settings = request.getfixturevalue(f"{backend}_settings")
    store = make_store(settings)
    dataset_id = store_captioned_dataset(store)
    params = tiny_params(
        dataset_id=dataset_id, base_model=str(tiny_sd_path), max_steps=6, checkpoint_every=2, validation_every=2
    ).model_dump(exclude_unset=True)
    jobs = JobRepository(store)
    job = jobs.create("train", params)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env |= {"GHIBLI_DATA_DIR": str(settings.data_dir), "GHIBLI_S3_BUCKET": settings.s3_bucket}
    env |= {"GHIBLI_S3_ENDPOINT": settings.s3_endpoint} if settings.s3_endpoint else {}
    worker = subprocess.Popen([sys.executable, "-c", CRASHING_WORKER, job.id], env=env, cwd=ROOT)
    latest = f"jobs/{job.id}/checkpoints/latest.json"
    deadline = time.monotonic() + 120
    while not store.exists(latest):
        assert worker.poll() is None, "the worker exited before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.1)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert jobs.get(job.id).state == JobState.running
    assert store.get_json(latest)["step"] == 2

    resumed = execute_job(job.id, store, settings)  # the broker redelivers the job
    assert resumed.state == JobState.succeeded, resumed.error
    result = resumed.result
    assert result["resumed_from_step"] == 2 and result["steps"] == 6
    assert [key.rsplit("/", 1)[-1] for key in result["validation"]] == [f"step-0000000{n}.png" for n in (2, 4, 6)]
    curve = store.get_json(result["loss_curve"])
    assert [point["step"] for point in curve] == [1, 2, 3, 4, 5, 6]
    record = LoraRepository(store).get(result["lora_id"])
    assert (record.diffusers_key, record.kohya_key, record.rank, record.steps) == (
        result["diffusers"],
        result["kohya"],
        4,
        6,
    )
    assert list(store.list(f"jobs/{job.id}/checkpoints/")) == []

    uninterrupted = execute_job(jobs.create("train", params).id, store, settings)
    assert uninterrupted.result["resumed_from_step"] == 0
    for fmt in ("diffusers", "kohya"):
        expected = _weights(store, uninterrupted.result[fmt], tmp_path)
        actual = _weights(store, result[fmt], tmp_path)
        assert expected.keys() == actual.keys()
        for key in expected:
            torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0)
    assert store.get_json(uninterrupted.result["loss_curve"]) == curve


def test_bad_configs_fail_fast_with_clear_messages(local_settings: Settings, local_store: ObjectStore) -> None:
    store = local_store
    with pytest.raises(ValidationError, match="rank"):
        TrainParams(dataset_id="d", rank=0)
    with pytest.raises(ValidationError, match="multiple of 8"):
        TrainParams(dataset_id="d", resolution=500)
    jobs = JobRepository(store)

    def failure(dataset_id: str) -> str:
        job = execute_job(jobs.create("train", {"dataset_id": dataset_id}).id, store, local_settings)
        assert job.state == JobState.failed
        return job.error or ""

    assert "dataset 'ds-missing' does not exist" in failure("ds-missing")
    uncaptioned = store_captioned_dataset(store)
    store.delete(f"datasets/{uncaptioned}/captions/captions.json")
    assert "has no captions; run the caption job first" in failure(uncaptioned)
    blank = store_captioned_dataset(store, captions=["a cat", " ", "a dog", ""])
    assert "2 unusable entries: entry 2 (images/" in failure(blank) and "empty caption" in failure(blank)


def test_accelerate_launch_runs_and_replays_events(tiny_sd_path: Path, captioned_folder: Path, tmp_path: Path) -> None:
    """The multi-GPU path (`accelerate launch` child, events replayed), here as one CPU process."""
    config = tmp_path / "cpu.yaml"
    config.write_text(
        'compute_environment: LOCAL_MACHINE\ndistributed_type: "NO"\nuse_cpu: true\nmixed_precision: "no"\n'
    )
    spec = TrainSpec(
        params=tiny_params(max_steps=4, checkpoint_every=2, validation_every=4),
        base_model=str(tiny_sd_path),
        dataset_dir=captioned_folder,
        work_dir=tmp_path / "run",
        lora_name="launched",
    )
    events = RecordedEvents()
    outcome = run_distributed(spec, events, config, 1, check_canceled=lambda: None)
    assert [report.step for report in events.steps] == [1, 2, 3, 4]
    assert events.checkpoints == [2, 4] and events.validations == [4]
    assert outcome.kohya_path.is_file() and outcome.steps == 4

    canceled_run = RecordedEvents()

    def cancel_after_first_step() -> None:
        if canceled_run.steps:
            raise JobCanceledError("test")

    spec = spec.model_copy(update={"params": tiny_params(max_steps=500, validation_every=None)})
    with pytest.raises(JobCanceledError):
        run_distributed(spec, canceled_run, config, 1, check_canceled=cancel_after_first_step)
    assert 1 <= len(canceled_run.steps) < 500


def test_cli_trains_a_local_folder(tiny_sd_path: Path, captioned_folder: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    config = tmp_path / "train.yaml"
    config.write_text("validation_prompts: [a cat]\nvalidation_seeds: [1]\nvalidation_inference_steps: 2\n")
    out = tmp_path / "out"
    arguments = ["train", str(captioned_folder), "--out", str(out), "--base-model", str(tiny_sd_path)]
    arguments += ["--steps", "2", "--resolution", "32", "--rank", "2", "--batch-size", "2", "--config", str(config)]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert (out / "pytorch_lora_weights.safetensors").is_file()
    assert (out / f"{captioned_folder.name}.safetensors").is_file()
    assert (out / "validation" / "step-00000002.png").is_file()
    bad = CliRunner().invoke(app, ["train", str(tmp_path), "--out", str(out), "--base-model", str(tiny_sd_path)])
    assert bad.exit_code == 2 and "has no captions" in re.sub(r"[\s│]+", " ", bad.output)
