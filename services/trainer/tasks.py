"""The `train` job: captioned dataset in the store → registered LoRA (diffusers + kohya weights).

Resumable: every checkpoint goes to `jobs/<job>/checkpoints/` with `latest.json` written last, so a
redelivered job (worker SIGKILLed) downloads the newest one and continues from that step. Every
output key is a function of the job id and step, so a re-run overwrites rather than duplicates.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from services.common.datasets import DatasetRepository
from services.common.jobs import JobContext
from services.common.loras import LoraRecord, LoraRepository
from services.common.storage import InvalidKeyError, ObjectNotFoundError, ObjectStore
from services.trainer.core import StepReport, TrainOutcome, TrainSpec, train
from services.trainer.data import DatasetError
from services.trainer.launch import run_distributed
from services.trainer.params import TrainParams
from services.trainer.settings import TrainerSettings


def captions_key(dataset_id: str) -> str:
    return f"datasets/{dataset_id}/captions/captions.json"


def materialize_dataset(store: ObjectStore, dataset_id: str, folder: Path) -> Path:
    """Download the captioned images into `folder` with a `captions.json` naming them locally."""
    try:
        DatasetRepository(store).get(dataset_id)
    except (ObjectNotFoundError, InvalidKeyError):
        raise DatasetError(f"dataset {dataset_id!r} does not exist") from None
    try:
        rows = store.get_json(captions_key(dataset_id))
    except ObjectNotFoundError:
        raise DatasetError(f"dataset {dataset_id!r} has no captions; run the caption job first") from None
    if not isinstance(rows, list) or not rows:
        raise DatasetError(f"{captions_key(dataset_id)} lists no captioned images")
    local_rows, missing = [], []
    for row in rows:
        image_key = str(row.get("image_key") or "") if isinstance(row, dict) else ""
        file_name = f"images/{image_key.rsplit('/', 1)[-1]}"
        target = folder / file_name
        try:
            if not target.is_file():  # kept from an earlier attempt of this job
                store.download(image_key, target)
        except (ObjectNotFoundError, InvalidKeyError):
            missing.append(image_key or "(no image_key)")
            continue
        local_rows.append({"file_name": file_name, "text": row.get("text", "")})
    if missing:
        raise DatasetError(f"{len(missing)} captioned images are missing from the store, e.g. {missing[:3]}")
    (folder / "captions.json").write_text(json.dumps(local_rows))
    return folder


class CheckpointStore:
    """Checkpoints of one job in the object store; `latest.json` is the commit marker."""

    def __init__(self, store: ObjectStore, job_id: str, keep: int) -> None:
        self.store, self.prefix, self.keep = store, f"jobs/{job_id}/checkpoints/", keep

    def save(self, step: int, path: Path) -> None:
        key = self.store.put_file(f"{self.prefix}step-{step:08d}.pt", path)
        self.store.put_json(f"{self.prefix}latest.json", {"step": step, "key": key})
        stale = [existing for existing in self.store.list(self.prefix) if existing.endswith(".pt")][: -self.keep]
        for old in stale:
            self.store.delete(old)

    def download_latest(self, folder: Path) -> Path | None:
        try:
            latest = self.store.get_json(f"{self.prefix}latest.json")
        except ObjectNotFoundError:
            return None
        return self.store.download(latest["key"], folder / latest["key"].rsplit("/", 1)[-1])

    def clear(self) -> None:
        for key in list(self.store.list(self.prefix)):
            self.store.delete(key)


class StorePublisher:
    """TrainEvents for a job: progress into the job record, checkpoints and grids into the store."""

    def __init__(self, ctx: JobContext, checkpoints: CheckpointStore, lora_prefix: str) -> None:
        self.ctx, self.checkpoints, self.lora_prefix = ctx, checkpoints, lora_prefix

    def on_step(self, report: StepReport) -> None:
        metrics = {
            "loss": report.loss,
            "lr": report.lr,
            "it_per_s": report.it_per_s,
            "samples_per_s": report.samples_per_s,
            "eta_s": report.eta_s,
        }
        message = f"step {report.step}/{report.total} loss {report.loss:.4f} · {report.it_per_s:.2f} it/s"
        self.ctx.progress(report.step, report.total, f"{message} · ETA {report.eta_s:.0f}s", metrics)

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.checkpoints.save(step, path)

    def on_validation(self, step: int, path: Path) -> None:
        self.ctx.store.put_file(f"{self.lora_prefix}validation/step-{step:08d}.png", path, "image/png")


def lora_id_for(job_id: str) -> str:
    return "lora-" + hashlib.sha256(job_id.encode()).hexdigest()[:16]


def default_name(dataset_name: str, lora_id: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset_name).strip("-.")[:60] or "ghibli"
    return f"{slug}-{lora_id[-6:]}"


def _run(spec: TrainSpec, publisher: StorePublisher, settings: TrainerSettings, ctx: JobContext) -> TrainOutcome:
    import torch

    gpus = torch.cuda.device_count()
    if settings.multi_gpu and gpus > 1:
        processes = settings.num_processes or gpus
        return run_distributed(spec, publisher, settings.accelerate_config, processes, ctx.check_canceled)
    return train(spec, publisher)


def run_train(ctx: JobContext) -> dict[str, Any]:
    params: TrainParams = ctx.params  # type: ignore[assignment]
    settings = TrainerSettings()
    store = ctx.store
    scratch = ctx.scratch_dir()
    dataset_dir = materialize_dataset(store, params.dataset_id, scratch / "dataset")
    dataset = DatasetRepository(store).get(params.dataset_id)
    lora_id = lora_id_for(ctx.job.id)
    lora_prefix = f"loras/{lora_id}/"
    name = params.name or default_name(dataset.name, lora_id)
    base_model = params.base_model or settings.base_model
    checkpoints = CheckpointStore(store, ctx.job.id, params.checkpoints_to_keep)
    spec = TrainSpec(
        params=params,
        base_model=base_model,
        dataset_dir=dataset_dir,
        work_dir=scratch / "run",
        lora_name=name,
        resume_checkpoint=checkpoints.download_latest(scratch / "resume"),
        metadata={"dataset_id": params.dataset_id, "job_id": ctx.job.id, "lora_id": lora_id, "name": name},
    )
    ctx.progress(0, None, f"training {name}" + (" (resuming from checkpoint)" if spec.resume_checkpoint else ""))
    outcome = _run(spec, StorePublisher(ctx, checkpoints, lora_prefix), settings, ctx)

    keys = {
        "diffusers": store.put_file(f"{lora_prefix}pytorch_lora_weights.safetensors", outcome.diffusers_path),
        "kohya": store.put_file(f"{lora_prefix}{name}.safetensors", outcome.kohya_path),
        "loss_curve": store.put_file(f"{lora_prefix}loss_curve.json", outcome.loss_curve_json, "application/json"),
        "loss_curve_png": store.put_file(f"{lora_prefix}loss_curve.png", outcome.loss_curve_png, "image/png"),
        "config": store.put_file(f"{lora_prefix}training_config.json", outcome.config_path, "application/json"),
    }
    validation = sorted(store.list(f"{lora_prefix}validation/"))
    record = LoraRecord(
        id=lora_id,
        name=name,
        base_model=base_model,
        rank=params.rank,
        alpha=params.lora_alpha,
        steps=outcome.steps,
        dataset_id=params.dataset_id,
        job_id=ctx.job.id,
        trigger=params.trigger,
        diffusers_key=keys["diffusers"],
        kohya_key=keys["kohya"],
        sha256=hashlib.sha256(outcome.kohya_path.read_bytes()).hexdigest(),
        artifacts={
            "config": keys["config"],
            "loss_curve": keys["loss_curve"],
            "loss_curve_png": keys["loss_curve_png"],
            **({"validation": validation[-1]} if validation else {}),
        },
        extra={"final_loss": outcome.final_loss, "resolution": params.resolution},
    )
    LoraRepository(store).save(record)
    checkpoints.clear()
    shutil.rmtree(scratch, ignore_errors=True)
    return {
        "lora_id": lora_id,
        "name": name,
        **keys,
        "validation": validation,
        "steps": outcome.steps,
        "resumed_from_step": outcome.resumed_from_step,
        "final_loss": outcome.final_loss,
        "sha256": record.sha256,
    }
