"""Deciding what is kept: quality flags, duplicate groups (best member kept), per-character cap."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from services.filter.analysis import ImageAnalysis, quality_problems
from services.filter.dedup import group_by_hash
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
    analyses: list[ImageAnalysis], characters: dict[str, str | None], options: FilterOptions
) -> dict[str, Decision]:
    """One decision per analysis. `characters` maps item id → character for the optional cap."""
    decisions = {analysis.item_id: Decision() for analysis in analyses}
    usable = []
    for analysis in analyses:
        if analysis.reason:
            decisions[analysis.item_id] = Decision(analysis.reason, analysis.detail)
        else:
            usable.append(analysis)
    problems = {analysis.item_id: quality_problems(analysis, options) for analysis in usable}

    # Identical pixels have identical hashes, so each near-duplicate group also holds the exact ones.
    labels = group_by_hash([analysis.phash_int for analysis in usable], options.near_duplicate_distance)
    groups: dict[int, list[ImageAnalysis]] = defaultdict(list)
    for label, analysis in zip(labels, usable, strict=True):
        groups[label].append(analysis)
    for label, members in groups.items():
        # Best first: passes the quality checks, most pixels, sharpest; the id breaks ties stably.
        members.sort(
            key=lambda item: (
                bool(problems[item.item_id]),
                -item.width * item.height,
                -(item.blur or 0),
                item.item_id,
            )
        )
        keeper = members[0]
        group = label if len(members) > 1 else None
        failed = problems[keeper.item_id]
        names = tuple(reason for reason, _ in failed)
        decisions[keeper.item_id] = (
            Decision(*failed[0], group=group, problems=names) if failed else Decision(group=group)
        )
        for member in members[1:]:
            exact = member.pixel_hash == keeper.pixel_hash
            reason = "exact_duplicate" if exact else "near_duplicate"
            distance = (member.phash_int ^ keeper.phash_int).bit_count()
            names = tuple(reason for reason, _ in problems[member.item_id])
            decisions[member.item_id] = Decision(reason, f"hash distance {distance}", keeper.item_id, group, names)

    if options.max_per_character is not None:
        _apply_cap(analyses, decisions, characters, options.max_per_character)
    return decisions


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
        members.sort(key=lambda item: (-(item.blur or 0), item.item_id))
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
