"""Near-duplicate groups: hash neighbours joined at once, looser ones when their keypoints agree."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from services.filter.analysis import ImageAnalysis
from services.filter.dedup import near_pairs
from services.filter.matching import Keypoints, keypoints, match, read_match_copy
from services.filter.union_find import find, union

# An image's hashes, in ImageAnalysis order: picture, content, mirrored picture, mirrored content.
MIRRORED_HASHES = (False, False, True, True)
# Each image has its keypoints checked against at most this many of its nearest looser neighbours,
# so the work grows with the number of images, not with the number of pairs.
MATCHES_PER_IMAGE = 3


def _hash_matrix(analyses: list[ImageAnalysis]) -> np.ndarray:
    """(images, 4) uint64: each image's picture, content and mirrored hashes (its picture hash where missing)."""
    rows = []
    for analysis in analyses:
        hashes = analysis.hashes
        rows.append(hashes + [hashes[0]] * (len(MIRRORED_HASHES) - len(hashes)))
    return np.array(rows, dtype=np.uint64).reshape(len(analyses), len(MIRRORED_HASHES))


def _closest_hashes(matrix: np.ndarray, max_distance: int) -> dict[tuple[int, int], tuple[int, bool]]:
    """(image, image) → (least distance between any of their hashes, whether one side was mirrored)."""
    values = matrix.ravel()
    unique, inverse = np.unique(values, return_inverse=True)
    owners: dict[int, list[int]] = defaultdict(list)  # unique value → positions in `values`
    for position, value_index in enumerate(inverse.ravel().tolist()):
        owners[value_index].append(position)
    columns = matrix.shape[1]
    closest: dict[tuple[int, int], tuple[int, bool]] = {}

    def consider(first: int, second: int, distance: int) -> None:
        image_a, image_b = first // columns, second // columns
        if image_a == image_b:
            return
        mirrored = MIRRORED_HASHES[first % columns] != MIRRORED_HASHES[second % columns]
        key = (min(image_a, image_b), max(image_a, image_b))
        if key not in closest or distance < closest[key][0]:
            closest[key] = (distance, mirrored)

    for positions in owners.values():  # equal hashes
        for index, first in enumerate(positions):
            for second in positions[index + 1 :]:
                consider(first, second, 0)
    pairs = near_pairs(unique, max_distance)
    distances = np.bitwise_count(unique[pairs[:, 0]] ^ unique[pairs[:, 1]]).tolist() if len(pairs) else []
    for (value_a, value_b), distance in zip(pairs.tolist(), distances, strict=True):
        for first in owners[value_a]:
            for second in owners[value_b]:
                consider(first, second, distance)
    return closest


def _capped(pairs: list[tuple[int, int, int, bool]], count: int) -> list[tuple[int, int, int, bool]]:
    """The pairs (nearest first) each of whose images is in fewer than MATCHES_PER_IMAGE earlier ones."""
    left = [MATCHES_PER_IMAGE] * count
    kept = []
    for pair in pairs:
        _, first, second, _ = pair
        if left[first] and left[second]:
            left[first] -= 1
            left[second] -= 1
            kept.append(pair)
    return kept


def group_near_duplicates(
    analyses: list[ImageAnalysis],
    strict_distance: int,
    match_distance: int,
    load_match_copy: Callable[[ImageAnalysis], bytes],
    threads: int | None = None,
) -> list[int]:
    """A group label per analysis (equal labels, one group). Images whose hashes lie within
    `strict_distance` are joined, and those within `match_distance` whose keypoints agree on one
    transform (matching.match), each image with its MATCHES_PER_IMAGE nearest."""
    count = len(analyses)
    parent = np.arange(count, dtype=np.int32)
    if count < 2:
        return list(range(count))
    closest = _closest_hashes(_hash_matrix(analyses), max(strict_distance, match_distance))
    looser = []
    for (first, second), (distance, mirrored) in closest.items():
        if distance <= strict_distance:
            union(parent, first, second)
        else:
            looser.append((distance, first, second, mirrored))
    looser.sort()
    checkable = [pair for pair in looser if analyses[pair[1]].match_size and analyses[pair[2]].match_size]
    to_check = _capped(checkable, count)
    wanted = sorted(
        {(first, False) for _, first, _, _ in to_check} | {(second, mirrored) for _, _, second, mirrored in to_check}
    )
    # Keypoints and matches on all cores (OpenCV releases the GIL); every capped pair is checked,
    # even one that an earlier match already joined: checking in order saved little and ran on one core.
    with ThreadPoolExecutor(threads or len(os.sched_getaffinity(0))) as pool:
        found = pool.map(lambda key: keypoints(read_match_copy(load_match_copy(analyses[key[0]])), key[1]), wanted)
        cache: dict[tuple[int, bool], Keypoints] = dict(zip(wanted, found, strict=True))
        matches = pool.map(lambda pair: match(cache[pair[1], False], cache[pair[2], pair[3]]), to_check)
        for (_, first, second, _), outcome in zip(to_check, matches, strict=True):
            if outcome.confirmed:
                union(parent, first, second)
    return [int(find(parent, index)) for index in range(count)]
