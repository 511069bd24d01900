"""One filter run over any inputs: analyse in parallel, decide, build the report (no store, no Celery)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.filter.analysis import AnalysisConfig, ImageAnalysis, analyse_all, options_digest
from services.filter.report import reason_counts, render_contact_sheet, repeated_entry, report_entry
from services.filter.selection import balance, decide


@dataclass(frozen=True)
class FilterInput:
    item_id: str  # sha256 of the source bytes
    load: Callable[[], bytes]
    provenance: dict[str, Any] = field(default_factory=dict)  # source_key, source, character, movie


@dataclass
class FilterOutcome:
    entries: list[dict[str, Any]]  # one per input, in input order
    kept: list[tuple[FilterInput, ImageAnalysis]]
    reasons: dict[str, int]
    balance: dict[str, list[dict[str, Any]]]
    html: str
    work_dir: Path  # holds the normalised images' packs

    @property
    def dropped(self) -> int:
        return len(self.entries) - len(self.kept)

    def clean_bytes(self, analysis: ImageAnalysis) -> bytes:
        """A kept image's normalised bytes (its name is `analysis.clean_file`)."""
        return analysis.read_clean(self.work_dir)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def filter_images(
    inputs: list[FilterInput],
    config: AnalysisConfig,
    work_root: Path,
    workers: int,
    progress: Callable[[int, int, str], None] = lambda step, total, message: None,
    title: str = "filter report",
) -> FilterOutcome:
    """Analyse every input (resuming from `work_root`'s cache), then decide and report."""
    unique: dict[str, FilterInput] = {}
    for item in inputs:
        unique.setdefault(item.item_id, item)  # the same bytes twice are analysed once
    work_dir = work_root / options_digest(config)
    total = len(unique)
    done = 0

    def count(analysis: ImageAnalysis) -> None:
        nonlocal done
        done += 1
        progress(done, total + 1, f"analysed {done}/{total}")

    analyses = analyse_all(((item.item_id, item.load) for item in unique.values()), config, work_dir, workers, count)
    progress(total, total + 1, "comparing and deciding")
    ordered = [analyses[item_id] for item_id in unique]
    characters = {item.item_id: item.provenance.get("character") for item in unique.values()}
    decisions = decide(ordered, characters, config.options, lambda analysis: analysis.read_match_copy(work_dir))

    entries, kept = [], []
    first_entries: dict[str, dict[str, Any]] = {}
    for item in inputs:  # one entry per input, a repeated file's too
        source = {"source_sha256": item.item_id, **item.provenance}
        if item.item_id in first_entries:
            entries.append(repeated_entry(first_entries[item.item_id], source))
            continue
        analysis, decision = analyses[item.item_id], decisions[item.item_id]
        first_entries[item.item_id] = report_entry(analysis, decision, source)
        entries.append(first_entries[item.item_id])
        if decision.kept and analysis.clean_file:
            kept.append((item, analysis))
    labels = {
        item.item_id: (item.provenance.get("character"), item.provenance.get("movie")) for item in unique.values()
    }
    per_group = balance(list(unique), decisions, labels)
    thumbnails = {analysis.item_id: analysis.thumbnail for analysis in ordered}
    page = render_contact_sheet(title, entries, thumbnails, per_group)
    return FilterOutcome(entries, kept, reason_counts(entries), per_group, page, work_dir)
