"""The filter job: a dataset's raw images in, clean 512×512 images plus manifest and report out."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from services.common.datasets import DatasetRepository
from services.common.jobs import JobContext
from services.common.metrics import IMAGES_PROCESSED
from services.filter.analysis import AnalysisConfig
from services.filter.params import FilterOptions, FilterParams
from services.filter.run import FilterInput, default_workers, filter_images
from services.filter.settings import FilterSettings

CLEAN_NAMESPACE = "images/clean"
_MIME = {"jpg": "image/jpeg", "png": "image/png"}


def analysis_config(options: FilterOptions, settings: FilterSettings) -> AnalysisConfig:
    return AnalysisConfig(
        options=FilterOptions.model_validate(options.model_dump(include=set(FilterOptions.model_fields))),
        max_pixels=settings.max_pixels,
        ocr_side=settings.ocr_side,
        tessdata_dir=settings.tessdata_dir,
        text_model=settings.text_model,
        thumbnail_side=settings.thumbnail_side,
    )


def run_filter(ctx: JobContext) -> dict[str, Any]:
    params: FilterParams = ctx.params  # type: ignore[assignment]
    settings = FilterSettings()
    store, dataset_id = ctx.store, params.dataset_id
    DatasetRepository(store).get(dataset_id)  # a clear error for an unknown dataset
    raw_images = sorted(DatasetRepository(store).raw_images(dataset_id), key=lambda raw: raw.sha256)
    inputs = [
        FilterInput(
            raw.sha256,
            partial(store.get_bytes, raw.key),
            {"source_key": raw.key, "source": raw.source, "character": raw.character, "movie": raw.movie},
        )
        for raw in raw_images
    ]
    ctx.progress(0, len(inputs) + 1, "analysing", force=True)
    outcome = filter_images(
        inputs,
        analysis_config(params, settings),
        ctx.scratch_dir(),
        settings.workers or default_workers(),
        lambda step, total, message: ctx.progress(step, total, message),
        title=f"filter report: dataset {dataset_id}, job {ctx.job.id}",
    )
    IMAGES_PROCESSED.labels("filter").inc(len(outcome.entries))

    images = []
    for item, analysis in outcome.kept:
        extension = Path(analysis.clean_file or "").suffix.lstrip(".")
        # Content-addressed: a rerun after a crash finds the object and writes nothing twice.
        key, _ = store.put_content_addressed(
            CLEAN_NAMESPACE, outcome.clean_bytes(analysis), extension, _MIME[extension]
        )
        ctx.check_canceled()
        images.append(
            {
                "key": key,
                "sha256": analysis.clean_sha256,
                "source_sha256": item.item_id,
                "source": item.provenance["source"],
                "character": item.provenance["character"],
                "movie": item.provenance["movie"],
                "width": params.size,
                "height": params.size,
            }
        )
    prefix = f"datasets/{dataset_id}/filtered"
    counts = {"input": len(outcome.entries), "kept": len(images), "dropped": outcome.dropped, **outcome.reasons}
    manifest_key = store.put_json(
        f"{prefix}/manifest.json", {"dataset_id": dataset_id, "job_id": ctx.job.id, "images": images, "counts": counts}
    )
    report_key = store.put_json(
        f"{prefix}/report.json",
        {
            "dataset_id": dataset_id,
            "job_id": ctx.job.id,
            "params": params.model_dump(mode="json"),
            "counts": counts,
            "balance": outcome.balance,
            "entries": outcome.entries,
        },
    )
    html_key = store.put_bytes(f"{prefix}/report.html", outcome.html.encode(), "text/html; charset=utf-8")
    return {
        "manifest": manifest_key,
        "report": report_key,
        "report_html": html_key,
        "kept": len(images),
        "dropped": outcome.dropped,
        "reasons": outcome.reasons,
        "balance": outcome.balance,
    }
