"""Render a pipeline run's report: one self-contained HTML page (images inlined as data URIs)."""

from __future__ import annotations

import base64
import html
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Thumbnail:
    image_png: bytes | None
    caption: str


@dataclass
class StageSummary:
    stage: str
    job_id: str
    state: str
    seconds: float | None


@dataclass
class ReportData:
    title: str
    dataset_name: str
    stages: list[StageSummary] = field(default_factory=list)
    counts: list[tuple[str, int]] = field(default_factory=list)  # (stage label, images)
    per_character: list[tuple[str, int, int]] = field(default_factory=list)  # (character, raw, kept)
    drops: dict[str, list[Thumbnail]] = field(default_factory=dict)  # reason -> examples
    drop_counts: dict[str, int] = field(default_factory=dict)
    captions: list[Thumbnail] = field(default_factory=list)
    caption_word_counts: list[int] = field(default_factory=list)
    loss_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    validation_grids: list[Thumbnail] = field(default_factory=list)
    comparison_grid_png: bytes | None = None


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{margin-bottom:0}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse}td,th{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:.6rem}.grid figure{margin:0;width:140px;font-size:.75rem}
.grid img{width:140px;height:140px;object-fit:cover;border-radius:4px}
img.wide{max-width:100%;border:1px solid #eee}.muted{color:#888}
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _image(png: bytes | None, css_class: str = "", alt: str = "") -> str:
    if png is None:
        return '<span class="muted">(no image)</span>'
    return f'<img class="{css_class}" alt="{html.escape(alt)}" src="{_data_uri(png)}">'


def _figures(thumbnails: list[Thumbnail]) -> str:
    figures = "".join(
        f"<figure>{_image(thumb.image_png, alt=thumb.caption)}<figcaption>{html.escape(thumb.caption)}</figcaption>"
        "</figure>"
        for thumb in thumbnails
    )
    return f'<div class="grid">{figures}</div>'


def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(header)}</th>" for header in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def histogram_svg(values: list[int], width: int = 520, height: int = 160) -> str:
    """A bar chart of how often each value occurs (caption lengths in words)."""
    if not values:
        return '<p class="muted">no captions</p>'
    frequency = Counter(values)
    lowest, highest = min(values), max(values)
    bins = list(range(lowest, highest + 1))
    bar_width = width / len(bins)
    tallest = max(frequency.values())
    bars = []
    for position, value in enumerate(bins):
        bar_height = (height - 20) * frequency.get(value, 0) / tallest
        x, y = position * bar_width, height - 20 - bar_height
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar_width - 1, 1):.1f}" height="{bar_height:.1f}" '
            f'fill="#5b8db8"><title>{value} words: {frequency.get(value, 0)}</title></rect>'
        )
    labels = (
        f'<text x="0" y="{height - 4}" font-size="11">{lowest}</text>'
        f'<text x="{width - 20}" y="{height - 4}" font-size="11">{highest}</text>'
    )
    return f'<svg width="{width}" height="{height}" role="img">{"".join(bars)}{labels}</svg>'


def line_chart_svg(points: list[tuple[int, float]], width: int = 640, height: int = 220) -> str:
    """Loss against step as a polyline, with the axis ranges written at the corners."""
    first_step, last_step = points[0][0], points[-1][0]
    lowest, highest = min(loss for _, loss in points), max(loss for _, loss in points)
    step_span, loss_span = max(last_step - first_step, 1), max(highest - lowest, 1e-12)
    plot_width, plot_height = width - 50, height - 30
    coordinates = " ".join(
        f"{40 + plot_width * (step - first_step) / step_span:.1f},{10 + plot_height * (highest - loss) / loss_span:.1f}"
        for step, loss in points
    )
    labels = (
        f'<text x="0" y="16" font-size="11">{highest:.4g}</text>'
        f'<text x="0" y="{plot_height + 10}" font-size="11">{lowest:.4g}</text>'
        f'<text x="40" y="{height - 4}" font-size="11">step {first_step}</text>'
        f'<text x="{width - 70}" y="{height - 4}" font-size="11">step {last_step}</text>'
    )
    line = f'<polyline fill="none" stroke="#c0504d" stroke-width="1.5" points="{coordinates}"/>'
    return f'<svg width="{width}" height="{height}" role="img" aria-label="loss curve">{line}{labels}</svg>'


def render_report(data: ReportData) -> str:
    sections = [
        f"<h1>{html.escape(data.title)}</h1><p class='muted'>dataset {html.escape(data.dataset_name)}</p>",
        "<h2>Stages</h2>"
        + _table(
            ["stage", "job", "state", "seconds"],
            [[s.stage, s.job_id, s.state, f"{s.seconds:.1f}" if s.seconds is not None else "–"] for s in data.stages],
        ),
        "<h2>Images per stage</h2>" + _table(["stage", "images"], [[label, n] for label, n in data.counts]),
    ]
    if data.per_character:
        sections.append(
            "<h2>Per character</h2>"
            + _table(["character", "collected", "kept"], [[c, raw, kept] for c, raw, kept in data.per_character])
        )
    if data.drop_counts:
        drop_sections = [
            f"<h3>{html.escape(reason)} ({data.drop_counts[reason]})</h3>{_figures(data.drops.get(reason, []))}"
            for reason in sorted(data.drop_counts, key=lambda reason: -data.drop_counts[reason])
        ]
        sections.append("<h2>Dropped images by reason</h2>" + "".join(drop_sections))
    if data.captions:
        sections.append(
            "<h2>Captions</h2>"
            + _figures(data.captions)
            + "<h3>Caption length (words)</h3>"
            + histogram_svg(data.caption_word_counts)
        )
    if data.loss_curve:
        sections.append("<h2>Training loss</h2>" + line_chart_svg(data.loss_curve))
    if data.validation_grids:
        grids = "".join(
            f"<h3>{html.escape(grid.caption)}</h3>{_image(grid.image_png, 'wide', grid.caption)}"
            for grid in data.validation_grids
        )
        sections.append("<h2>Validation images during training</h2>" + grids)
    if data.comparison_grid_png:
        sections.append("<h2>Base model vs LoRA</h2>" + _image(data.comparison_grid_png, "wide", "comparison grid"))
    body = "\n".join(f"<section>{section}</section>" for section in sections)
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(data.title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )
