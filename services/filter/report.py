"""The filter report: one JSON entry per input, and a self-contained HTML contact sheet by reason."""

from __future__ import annotations

import html
from collections import defaultdict
from typing import Any

from services.filter.analysis import ImageAnalysis
from services.filter.selection import KEPT, Decision

REASON_ORDER = (
    "undecodable",
    "too_large",
    "too_small",
    "uniform",
    "blurry",
    "text",
    "exact_duplicate",
    "near_duplicate",
    "over_cap",
    KEPT,
)


def report_entry(analysis: ImageAnalysis, decision: Decision, source: dict[str, Any]) -> dict[str, Any]:
    """`source` carries the input's provenance: source_key, source_sha256, source, character, movie."""
    return {
        **source,
        "status": "kept" if decision.kept else "dropped",
        "reason": decision.reason,
        "detail": decision.detail,
        "duplicate_of": decision.duplicate_of,
        "group": decision.group,
        "problems": list(decision.problems),
        "width": analysis.width,
        "height": analysis.height,
        "scores": {
            "blur": analysis.blur,
            "std": analysis.std,
            "entropy": analysis.entropy,
            "text_words": analysis.text_words,
            "text_area": analysis.text_area,
            "text": analysis.text_sample,
            "phash": analysis.phash,
            "pixel_hash": analysis.pixel_hash,
        },
    }


def repeated_entry(first: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    """The entry of an input whose bytes an earlier input (with entry `first`) already had."""
    kept_id = first["source_sha256"] if first["status"] == "kept" else first["duplicate_of"]
    return {
        **first,
        **source,
        "status": "dropped",
        "reason": "exact_duplicate",
        "detail": f"the same bytes as {first.get('source') or first['source_sha256'][:12]}",
        "duplicate_of": kept_id,
    }


def reason_counts(entries: list[dict[str, Any]]) -> dict[str, int]:
    """How many inputs were dropped for each reason."""
    counts: dict[str, int] = defaultdict(int)
    for entry in entries:
        if entry["status"] != "kept":
            counts[entry["reason"]] += 1
    return dict(sorted(counts.items()))


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;background:#fafaf7;color:#222}
h2{margin-top:2rem;border-bottom:1px solid #ccc}
.sheet{display:flex;flex-wrap:wrap;gap:.5rem}
figure{margin:0;width:140px;font-size:.7rem;word-break:break-all}
figure img{width:128px;height:128px;object-fit:contain;background:#ddd;display:block}
.missing{width:128px;height:128px;background:#eee;display:flex;align-items:center;justify-content:center}
table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}
"""


def render_contact_sheet(
    title: str,
    entries: list[dict[str, Any]],
    thumbnails: dict[str, str],
    balance: dict[str, list[dict[str, Any]]],
    kept_examples: int = 60,
) -> str:
    """HTML with every dropped image (and some kept ones) as inline thumbnails, grouped by reason."""
    by_reason: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        by_reason[entry["reason"]].append(entry)
    order = [reason for reason in REASON_ORDER if reason in by_reason]
    order += sorted(set(by_reason) - set(order))
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_STYLE}</style>"]
    parts.append(f"<h1>{html.escape(title)}</h1><table><tr><th>reason</th><th>images</th></tr>")
    parts += [
        f"<tr><td><a href='#{reason}'>{reason}</a></td><td>{len(by_reason[reason])}</td></tr>" for reason in order
    ]
    parts.append("</table>")
    for field, rows in balance.items():
        parts.append(f"<h2>per {field}</h2><table><tr><th>{field}</th><th>collected</th><th>kept</th></tr>")
        parts += [
            f"<tr><td>{html.escape(str(row['name']))}</td><td>{row['collected']}</td><td>{row['kept']}</td></tr>"
            for row in rows
        ]
        parts.append("</table>")
    for reason in order:
        shown = by_reason[reason][:kept_examples] if reason == KEPT else by_reason[reason]
        total = len(by_reason[reason])
        heading = f"{reason} ({total}, first {len(shown)})" if len(shown) < total else f"{reason} ({total})"
        parts.append(f"<h2 id='{reason}'>{html.escape(heading)}</h2><div class='sheet'>")
        for entry in shown:
            parts.append(_figure(entry, thumbnails.get(entry["source_sha256"], "")))
        parts.append("</div>")
    return "\n".join(parts)


def _figure(entry: dict[str, Any], thumbnail: str) -> str:
    label = entry.get("source") or entry["source_sha256"][:12]
    note = entry.get("detail") or ""
    if entry.get("duplicate_of"):
        note = f"duplicate of {entry['duplicate_of'][:12]} ({note})"
    picture = f"<img src='{thumbnail}' alt=''>" if thumbnail else "<div class='missing'>no preview</div>"
    return (
        f"<figure title='{html.escape(str(label))}'>{picture}"
        f"<figcaption>{html.escape(str(label)[-40:])}<br>{html.escape(note[:120])}</figcaption></figure>"
    )
