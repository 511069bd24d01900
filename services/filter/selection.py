"""Deciding what is kept: quality flags, duplicate groups (best member kept), per-character cap."""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg

from services.filter.analysis import ImageAnalysis, quality_problems
from services.filter.grouping import group_near_duplicates
from services.filter.params import FilterOptions

KEPT = "kept"


@dataclass
class Decision:
    reason: str = KEPT  # "kept" or why it was dropped
    detail: str = ""
    duplicate_of: str | None = None  # item id of the group member that was kept
    group: int | None = None  # near-duplicate group, shared by all members
    problems: tuple[str, ...] = ()  # every quality check it failed, whatever `reason` is

    @property
    def kept(self) -> bool:
        return self.reason == KEPT


def decide(
    analyses: list[ImageAnalysis],
    characters: dict[str, str | None],
    options: FilterOptions,
    load_match_copy: Callable[[ImageAnalysis], bytes],
) -> dict[str, Decision]:
    """One decision per analysis. `characters` maps item id → character for the optional cap;
    `load_match_copy` reads an analysis's match copy (ImageAnalysis.read_match_copy)."""
    decisions = {analysis.item_id: Decision() for analysis in analyses}
    usable = []
    problems: dict[str, list[tuple[str, str]]] = {}
    for analysis in analyses:
        if analysis.reason:
            decisions[analysis.item_id] = Decision(analysis.reason, analysis.detail)
            continue
        failed = problems[analysis.item_id] = quality_problems(analysis, options)
        if failed and failed[0][0] == "uniform":  # next to nothing in it: its hashes say nothing either
            decisions[analysis.item_id] = Decision(*failed[0], problems=tuple(reason for reason, _ in failed))
        else:
            usable.append(analysis)

    # Identical pixels have identical hashes, so each near-duplicate group also holds the exact ones.
    labels = group_near_duplicates(
        usable, options.near_duplicate_distance, options.keypoint_match_distance, load_match_copy
    )
    groups: dict[int, list[ImageAnalysis]] = defaultdict(list)
    for label, analysis in zip(labels, usable, strict=True):
        groups[label].append(analysis)
    for label, members in groups.items():
        keeper = best_copy(members, {item.item_id: bool(problems[item.item_id]) for item in members})
        group = label if len(members) > 1 else None
        failed = problems[keeper.item_id]
        names = tuple(reason for reason, _ in failed)
        decisions[keeper.item_id] = (
            Decision(*failed[0], group=group, problems=names) if failed else Decision(group=group)
        )
        for member in members:
            if member is keeper:
                continue
            reason = "exact_duplicate" if member.pixel_hash == keeper.pixel_hash else "near_duplicate"
            distance = hash_distance(member, keeper)
            detail = f"hash distance {distance}"
            if distance > options.near_duplicate_distance:
                detail += " (the same picture by its keypoints)"
            names = tuple(reason for reason, _ in problems[member.item_id])
            decisions[member.item_id] = Decision(reason, detail, keeper.item_id, group, names)

    if options.max_per_character is not None:
        _apply_cap(analyses, decisions, characters, options.max_per_character)
    return decisions


def hash_distance(first: ImageAnalysis, second: ImageAnalysis) -> int:
    """The least distance between any hash of one and any of the other (frames and mirroring aside)."""
    return min((a ^ b).bit_count() for a in first.hashes for b in second.hashes)


# A copy keeps up to this share of the group's best on each measure and still counts as as good.
FRAMED_BELOW = 0.97  # content share: less is a frame or letterbox bars around the picture
DETAIL_SHARE = 0.5  # fine detail: upscaled copies had 0.1–0.4 of their original's
CONTENT_SHARE = 0.97  # content pixels: a 5% crop has 0.95


def best_copy(members: list[ImageAnalysis], has_problem: dict[str, bool]) -> ImageAnalysis:
    """The copy to keep: the best source, not the biggest file.

    Each step keeps the copies within reach of the best on one measure: no failed check (text,
    blur); no frame; fine detail (drops upscales, whose extra pixels carry nothing); most content
    pixels at the resolution decoded (drops crops and downscales); then the copy that differs least
    from all the others (colour shifts, logos and mirrored copies differ from every other copy,
    the original only from each copy's own change); then the sharpest.
    """
    candidates = [member for member in members if not has_problem[member.item_id]] or list(members)
    unframed = [member for member in candidates if member.content_share >= FRAMED_BELOW]
    candidates = unframed or candidates
    most_detail = max(member.fine_detail for member in candidates)
    candidates = [member for member in candidates if member.fine_detail >= DETAIL_SHARE * most_detail]
    most_content = max(member.content_pixels for member in candidates)
    candidates = [member for member in candidates if member.content_pixels >= CONTENT_SHARE * most_content]
    if len(candidates) == 1:
        return candidates[0]
    looks = {member.item_id: _look(member) for member in members}
    differences = {
        candidate.item_id: sum(_difference(looks[candidate.item_id], looks[member.item_id]) for member in members)
        for candidate in candidates
    }
    return min(candidates, key=lambda member: (round(differences[member.item_id], 1), member.blur or 0, member.item_id))


LOOK_SIDE = 16


def _look(analysis: ImageAnalysis) -> np.ndarray:
    """A 16×16 colour copy of the normalised picture (from its thumbnail), as float32."""
    if not analysis.thumbnail.startswith("data:image/jpeg;base64,"):
        return np.zeros((LOOK_SIDE, LOOK_SIDE, 3), dtype=np.float32)
    pixels = simplejpeg.decode_jpeg(base64.b64decode(analysis.thumbnail.split(",", 1)[1]), "RGB")
    return cv2.resize(pixels, (LOOK_SIDE, LOOK_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)


def _difference(first: np.ndarray, second: np.ndarray) -> float:
    """Mean absolute difference in grey levels, the mirrored copy's if that is closer."""
    return float(min(np.abs(first - second).mean(), np.abs(first - second[:, ::-1]).mean()))


def _apply_cap(
    analyses: list[ImageAnalysis], decisions: dict[str, Decision], characters: dict[str, str | None], cap: int
) -> None:
    """Keep the `cap` sharpest images of each character; images with no character are not capped."""
    kept_by_character: dict[str, list[ImageAnalysis]] = defaultdict(list)
    for analysis in analyses:
        character = characters.get(analysis.item_id)
        if character and decisions[analysis.item_id].kept:
            kept_by_character[character].append(analysis)
    for character, members in kept_by_character.items():
        members.sort(key=lambda item: (item.blur or 0, item.item_id))
        for member in members[cap:]:
            decisions[member.item_id] = Decision("over_cap", f"more than {cap} images of {character}")


def balance(
    item_ids: list[str], decisions: dict[str, Decision], labels: dict[str, tuple[str | None, str | None]]
) -> dict[str, list[dict[str, object]]]:
    """Collected vs kept per character and per film (labels: item id → (character, movie))."""
    collected: dict[str, Counter[str]] = {"character": Counter(), "movie": Counter()}
    kept: dict[str, Counter[str]] = {"character": Counter(), "movie": Counter()}
    for item_id in item_ids:
        character, movie = labels.get(item_id, (None, None))
        for field, value in (("character", character), ("movie", movie)):
            name = value or "(none)"
            collected[field][name] += 1
            kept[field][name] += decisions[item_id].kept
    return {
        field: [
            {"name": name, "collected": count, "kept": kept[field][name]}
            for name, count in sorted(collected[field].items())
        ]
        for field in ("character", "movie")
    }
