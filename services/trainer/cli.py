"""`ghibli-lora train`: a captioned folder → LoRA files here, or a `train` job on a running API."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from tqdm import tqdm

from services.common.cli_support import ApiOption, TokenOption, run_remote_job
from services.common.params import load_yaml
from services.trainer.params import TrainParams


class _ConsoleEvents:
    """TrainEvents for a local run: a progress bar and a line per checkpoint and validation grid."""

    def __init__(self) -> None:
        self.bar = tqdm(unit="step", delay=1.0)  # no empty bar when the dataset is rejected up front

    def on_step(self, report: Any) -> None:
        self.bar.total, self.bar.n = report.total, report.step
        self.bar.set_postfix(
            loss=f"{report.loss:.4f}", lr=f"{report.lr:.2e}", eta=f"{report.eta_s:.0f}s", refresh=False
        )
        self.bar.refresh()

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.bar.write(f"checkpoint {path}")

    def on_validation(self, step: int, path: Path) -> None:
        self.bar.write(f"validation grid {path}")


def _params(config: Path | None, overrides: dict[str, Any]) -> TrainParams:
    values: dict[str, Any] = {}
    if config is not None:
        try:
            values = load_yaml(config.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise typer.BadParameter(f"cannot read {config}: {error}", param_hint="--config") from None
    values.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return TrainParams.model_validate(values)
    except ValidationError as error:
        raise typer.BadParameter(str(error)) from None


def _train_locally(source: Path, out: Path, params: TrainParams) -> None:
    from services.trainer.core import TrainSpec, train
    from services.trainer.data import DatasetError
    from services.trainer.settings import TrainerSettings

    work_dir = out / ".work"
    checkpoints = sorted((work_dir / "checkpoints").glob("step-*.pt"))
    name = params.name or source.resolve().name
    spec = TrainSpec(
        params=params,
        base_model=params.base_model or TrainerSettings().base_model,
        dataset_dir=source,
        work_dir=work_dir,
        lora_name=name,
        resume_checkpoint=checkpoints[-1] if checkpoints else None,  # an interrupted run here continues
        metadata={"dataset_id": params.dataset_id, "name": name},
    )
    try:
        outcome = train(spec, _ConsoleEvents())
    except DatasetError as error:
        raise typer.BadParameter(str(error), param_hint="SOURCE") from None
    final = outcome.diffusers_path.parent
    for produced in final.iterdir():
        shutil.copy2(produced, out / produced.name)
    validation = out / "validation"
    shutil.copytree(work_dir / "validation", validation, dirs_exist_ok=True)
    typer.echo(f"diffusers: {out / outcome.diffusers_path.name}")
    typer.echo(f"kohya/A1111: {out / outcome.kohya_path.name}")
    typer.echo(f"loss curve: {out / outcome.loss_curve_png.name}; validation grids: {validation}")


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_command(
        source: Annotated[
            Path | None,
            typer.Argument(help="Captioned folder: images + captions.json, metadata.jsonl or captions.csv."),
        ] = None,
        out: Annotated[Path, typer.Option(help="Where the LoRA files go (local mode).")] = Path("lora-out"),
        dataset: Annotated[str | None, typer.Option(help="Dataset id to train on (with --api).")] = None,
        config: Annotated[Path | None, typer.Option(help="YAML/JSON of any TrainParams fields.")] = None,
        name: Annotated[str | None, typer.Option(help="LoRA name (A1111 <lora:NAME:1>).")] = None,
        base_model: Annotated[str | None, typer.Option(help="Hub id or local pipeline folder.")] = None,
        rank: int | None = None,
        alpha: float | None = None,
        steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        resolution: int | None = None,
        seed: int | None = None,
        cache_latents: Annotated[bool | None, typer.Option("--cache-latents/--no-cache-latents")] = None,
        gradient_checkpointing: Annotated[bool | None, typer.Option("--gradient-checkpointing/--no-gc")] = None,
        checkpoint_every: int | None = None,
        validation_every: int | None = None,
        api: ApiOption = None,
        token: TokenOption = None,
    ) -> None:
        """Train an SD1.5 LoRA (diffusers + A1111/kohya files) on a captioned folder, or submit a job with --api."""
        if api is None and source is None:
            raise typer.BadParameter("give a captioned folder, or --api URL --dataset ID")
        if api is not None and dataset is None:
            raise typer.BadParameter("--api needs --dataset ID", param_hint="--dataset")
        overrides = {
            "dataset_id": dataset or (source.resolve().name if source else None),
            "name": name,
            "base_model": base_model,
            "rank": rank,
            "alpha": alpha,
            "max_steps": steps,
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "resolution": resolution,
            "seed": seed,
            "cache_latents": cache_latents,
            "gradient_checkpointing": gradient_checkpointing,
            "checkpoint_every": checkpoint_every,
            "validation_every": validation_every,
        }
        params = _params(config, overrides)
        if api is None:
            assert source is not None
            out.mkdir(parents=True, exist_ok=True)
            _train_locally(source, out, params)
            return
        run_remote_job(api, token, "train", params.model_dump(mode="json", exclude_unset=True))
