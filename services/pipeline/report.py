"""Gather a finished pipeline run's artifacts from the store into one self-contained HTML report.

Each stage's artifacts are read through the data contracts of the stages (filter manifest and
report, captions.json, the trainer's loss curve and validation grids, the sample job's grids). A
stage that was skipped, or an artifact that is missing, leaves its section out rather than failing
the run that produced a LoRA.
"""

from __future__ import annotations

import io
import logging
from collections import Counter, defaultdict
from typing import Any

from PIL import Image

from services.common.datasets import DatasetRepository
from services.common.jobs import JobRepository
from services.common.storage import ObjectNotFoundError, ObjectStore
from services.pipeline.records import PipelineRecord
from services.pipeline.report_html import ReportData, StageSummary, Thumbnail, render_report

log = logging.getLogger(__name__)

THUMBNAIL_SIDE = 140
EXAMPLES_PER_REASON = 8
CAPTION_EXAMPLES = 12


def report_key(pipeline_id: str) -> str:
    return f"pipelines/{pipeline_id}/report.html"


def _png(store: ObjectStore, key: str | None, max_side: int | None = THUMBNAIL_SIDE) -> bytes | None:
    """The image at `key` as PNG (shrunk to a thumbnail when max_side is set); None if unreadable."""
    if not key:
        return None
    try:
        with Image.open(io.BytesIO(store.get_bytes(key))) as image:
            image = image.convert("RGB")
            if max_side:
                image.thumbnail((max_side, max_side))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", optimize=True)
            return buffer.getvalue()
    except Exception:  # a report with a missing picture beats no report
        log.warning("report: cannot read image %s", key, exc_info=True)
        return None


def _json_or_none(store: ObjectStore, key: str | None) -> Any:
    if not key:
        return None
    try:
        return store.get_json(key)
    except ObjectNotFoundError:
        return None


def _stage_summaries(record: PipelineRecord, jobs: JobRepository) -> list[StageSummary]:
    summaries = []
    for stage in record.config.active_stages():
        run = record.stages.get(stage.name)
        if run is None:
            continue
        job = jobs.get(run.job_id)
        seconds = (job.finished_at - job.started_at).total_seconds() if job.finished_at and job.started_at else None
        summaries.append(StageSummary(stage.name, job.id, job.state.value, seconds))
    return summaries


def _add_filter_sections(data: ReportData, store: ObjectStore, dataset_id: str, filtered: dict[str, Any]) -> None:
    raw_images = list(DatasetRepository(store).raw_images(dataset_id))
    data.counts.append(("collected", len(raw_images)))
    manifest = _json_or_none(store, filtered.get("manifest"))
    if manifest is None:
        return
    kept = manifest.get("images", [])
    data.counts.append(("kept by the filter", len(kept)))

    collected_per_character = Counter(image.character or "(none)" for image in raw_images)
    kept_per_character = Counter(entry.get("character") or "(none)" for entry in kept)
    data.per_character = [
        (character, collected, kept_per_character.get(character, 0))
        for character, collected in sorted(collected_per_character.items())
    ]

    entries = _json_or_none(store, filtered.get("report"))
    if isinstance(entries, dict):  # a report object with its entries inside
        entries = entries.get("entries", [])
    examples: dict[str, list[Thumbnail]] = defaultdict(list)
    drop_counts: Counter[str] = Counter()
    for entry in entries or []:
        if entry.get("status") != "dropped":
            continue
        reason = str(entry.get("reason") or "unknown")
        drop_counts[reason] += 1
        if len(examples[reason]) < EXAMPLES_PER_REASON:
            label = reason if not entry.get("duplicate_of") else f"duplicate of {str(entry['duplicate_of'])[:10]}"
            examples[reason].append(Thumbnail(_png(store, entry.get("source_key")), label))
    data.drop_counts, data.drops = dict(drop_counts), dict(examples)


def _add_caption_sections(data: ReportData, store: ObjectStore, captioned: dict[str, Any]) -> None:
    captions = _json_or_none(store, captioned.get("captions"))
    if not captions:
        return
    data.counts.append(("captioned", len(captions)))
    data.caption_word_counts = [len(str(item.get("text", "")).split()) for item in captions]
    data.captions = [
        Thumbnail(_png(store, item.get("image_key")), str(item.get("text", ""))) for item in captions[:CAPTION_EXAMPLES]
    ]


def _add_training_sections(data: ReportData, store: ObjectStore, trained: dict[str, Any]) -> None:
    curve = _json_or_none(store, trained.get("loss_curve"))
    if curve:
        data.loss_curve = [(int(point["step"]), float(point["loss"])) for point in curve]
    for key in trained.get("validation") or []:
        data.validation_grids.append(Thumbnail(_png(store, key, max_side=None), key.rsplit("/", 1)[-1]))


def build_report_data(store: ObjectStore, record: PipelineRecord, upstream: dict[str, dict[str, Any]]) -> ReportData:
    dataset = DatasetRepository(store).get(record.dataset_id)
    data = ReportData(title=f"ghibli-lora run {record.config.name} ({record.id})", dataset_name=dataset.name)
    data.stages = _stage_summaries(record, JobRepository(store))
    _add_filter_sections(data, store, record.dataset_id, upstream.get("filter", {}))
    _add_caption_sections(data, store, upstream.get("caption", {}))
    _add_training_sections(data, store, upstream.get("train", {}))
    sample = upstream.get("sample", {})
    data.comparison_grid_png = _png(store, sample.get("comparison") or sample.get("grid"), max_side=None)
    return data


def write_report(store: ObjectStore, record: PipelineRecord, upstream: dict[str, dict[str, Any]]) -> str:
    """Render the run's report and store it; returns its key."""
    page = render_report(build_report_data(store, record, upstream))
    return store.put_bytes(report_key(record.id), page.encode(), "text/html; charset=utf-8")
