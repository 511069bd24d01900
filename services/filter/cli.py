"""`ghibli-lora filter`: a local folder in, clean images plus report out; or a job on a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from services.common.cli_support import ApiOption, DatasetOption, TokenOption, run_remote_job
from services.common.storage import sha256_hex
from services.filter.params import FilterOptions
from services.filter.run import FilterInput, default_workers, filter_images
from services.filter.settings import FilterSettings
from services.filter.tasks import analysis_config


def local_inputs(folder: Path) -> list[FilterInput]:
    """Every file under `folder`; a file in a sub-folder takes that folder's name as its character."""
    inputs = []
    for path in sorted(item for item in folder.rglob("*") if item.is_file() and not item.name.startswith(".")):
        data = path.read_bytes()
        character = path.parent.name.replace("_", " ") if path.parent != folder else None
        provenance = {"source_key": str(path), "source": str(path.relative_to(folder)), "character": character}
        inputs.append(FilterInput(sha256_hex(data), path.read_bytes, {**provenance, "movie": None}))
    return inputs


def filter_folder(source: Path, output: Path, options: FilterOptions, workers: int | None = None) -> dict[str, object]:
    """Write `output/images/<sha256>.<ext>`, `manifest.json`, `report.json`, `report.html`."""
    settings = FilterSettings()
    outcome = filter_images(
        local_inputs(source),
        analysis_config(options, settings),
        output / ".work",
        workers or settings.workers or default_workers(),
        title=f"filter report: {source}",
    )
    images_dir = output / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    images = []
    for item, analysis in outcome.kept:
        target = images_dir / (analysis.clean_file or "")  # named by its sha256: rewriting it is harmless
        target.write_bytes(outcome.clean_bytes(analysis))
        images.append(
            {
                "key": str(target.relative_to(output)),
                "sha256": analysis.clean_sha256,
                "source_sha256": item.item_id,
                **{name: item.provenance[name] for name in ("source", "character", "movie")},
                "width": options.size,
                "height": options.size,
            }
        )
    counts = {"input": len(outcome.entries), "kept": len(images), "dropped": outcome.dropped, **outcome.reasons}
    (output / "manifest.json").write_text(json.dumps({"images": images, "counts": counts}, indent=1))
    report = {"counts": counts, "balance": outcome.balance, "entries": outcome.entries}
    (output / "report.json").write_text(json.dumps(report, indent=1))
    (output / "report.html").write_text(outcome.html)
    return counts


def register(app: typer.Typer) -> None:
    @app.command("filter")
    def filter_command(
        source: Annotated[Path | None, typer.Argument(help="Folder of images (sub-folders name characters).")] = None,
        output: Annotated[Path | None, typer.Argument(help="Folder for clean images and the report.")] = None,
        api: ApiOption = None,
        dataset: DatasetOption = None,
        token: TokenOption = None,
        size: int = 512,
        mode: Annotated[str, typer.Option(help="center-crop, pad or resize.")] = "center-crop",
        min_side: int = 256,
        distance: Annotated[int, typer.Option("--distance", help="Near-duplicate hash distance.")] = 10,
        blur_threshold: Annotated[
            float, typer.Option(help="Blur score (0 sharp … 1 blurry) above which an image is dropped.")
        ] = 0.5,
        text_detector: Annotated[str, typer.Option(help="db (a text-detection model), tesseract or none.")] = "db",
        max_per_character: int | None = None,
        workers: Annotated[int | None, typer.Option(help="Analysis processes (default: CPU cores).")] = None,
    ) -> None:
        """Normalise to SIZE×SIZE and drop broken, tiny, blurred, texty and duplicate images, with a report."""
        try:
            options = FilterOptions(
                size=size,
                mode=mode,  # type: ignore[arg-type]
                min_side=min_side,
                near_duplicate_distance=distance,
                blur_threshold=blur_threshold,
                text_detector=text_detector,  # type: ignore[arg-type]
                max_per_character=max_per_character,
            )
        except ValueError as error:
            typer.echo(str(error), err=True)
            raise typer.Exit(2) from None
        if api:
            if not dataset:
                typer.echo("--api needs --dataset ID", err=True)
                raise typer.Exit(2)
            run_remote_job(api, token, "filter", {"dataset_id": dataset, **options.model_dump(mode="json")})
        if source is None or output is None or not source.is_dir():
            typer.echo("give SOURCE (an existing folder) and OUTPUT, or --api URL --dataset ID", err=True)
            raise typer.Exit(2)
        counts = filter_folder(source, output, options, workers)
        typer.echo(json.dumps(counts, indent=2))
        typer.echo(f"report: {output / 'report.html'}")
