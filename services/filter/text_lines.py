"""The text pre-screen's grouping of edge pieces into lines, compiled (numba) when this module is imported.

Kept apart from text.py so only what screens pays for compiling: the filter's forkserver preloads this
module (workers fork with the machine code ready), text.py imports it on its first screen, and other
commands never load it. ~4 s to compile once (cached in `__pycache__` or `NUMBA_CACHE_DIR`), ~0.4 s to
load from the cache; a screen then spends ~0.01 ms here where NumPy's ~40 small array operations took
~0.25 ms.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from services.filter.union_find import find, union

MIN_PIECE_HEIGHT, MAX_PIECE_HEIGHT = 6, 100  # pixels of the 512² measuring copy
MAX_PIECE_ASPECT = 8  # width / height: a whole word at most
MIN_FILL, MAX_FILL = 0.15, 0.85  # edge pixels / box area: strokes, neither lone lines nor solid blobs


# Eager (typed) compilation: at import, so the forkserver that preloads this module holds the code.
@njit("float64[:, ::1](int32[:, ::1])", cache=True, nogil=True)
def line_boxes_from_pieces(stats: np.ndarray) -> np.ndarray:
    """Boxes (left, top, right, bottom) of lines, from connected components' stats (OpenCV's rows:
    left, top, width, height, area; row 0 the background).

    Letter-sized pieces join when they sit level (centres within a quarter of the taller's height),
    are of similar height (the shorter over half the taller) and less than 0.8 of a height apart; a
    group is a line with three pieces, or two that span four heights.
    """
    count = stats.shape[0]
    pieces = np.empty(count, np.int64)
    kept = 0
    for row in range(1, count):
        width, height, area = stats[row, 2], stats[row, 3], stats[row, 4]
        fill = area / (width * height)
        if (
            MIN_PIECE_HEIGHT <= height <= MAX_PIECE_HEIGHT
            and width <= MAX_PIECE_ASPECT * height
            and MIN_FILL <= fill <= MAX_FILL
        ):
            pieces[kept] = row
            kept += 1
    parent = np.arange(kept)  # union-find over the kept pieces
    for first in range(kept):
        row_a = pieces[first]
        left_a, top_a, width_a, height_a = stats[row_a, 0], stats[row_a, 1], stats[row_a, 2], stats[row_a, 3]
        for second in range(first + 1, kept):
            row_b = pieces[second]
            left_b, top_b, width_b, height_b = stats[row_b, 0], stats[row_b, 1], stats[row_b, 2], stats[row_b, 3]
            taller, shorter = max(height_a, height_b), min(height_a, height_b)
            gap = max(left_a, left_b) - min(left_a + width_a, left_b + width_b)  # negative when overlapping
            level = abs((top_a + height_a / 2) - (top_b + height_b / 2)) < 0.25 * taller
            if level and shorter > 0.5 * taller and gap < 0.8 * taller:
                union(parent, first, second)
    members = np.zeros(kept, np.int64)
    widths, heights = np.zeros(kept), np.zeros(kept)
    boxes = np.empty((kept, 4))
    for index in range(kept):
        root, row = find(parent, index), pieces[index]
        left, top = stats[row, 0], stats[row, 1]
        right, bottom = left + stats[row, 2], top + stats[row, 3]
        if members[root] == 0:
            boxes[root, 0], boxes[root, 1], boxes[root, 2], boxes[root, 3] = left, top, right, bottom
        else:
            boxes[root, 0], boxes[root, 1] = min(boxes[root, 0], left), min(boxes[root, 1], top)
            boxes[root, 2], boxes[root, 3] = max(boxes[root, 2], right), max(boxes[root, 3], bottom)
        members[root] += 1
        widths[root] += stats[row, 2]
        heights[root] += stats[row, 3]
    lines = 0
    for root in range(kept):
        span_in_heights = widths[root] / (heights[root] / members[root]) if members[root] else 0.0
        if members[root] >= 3 or (members[root] >= 2 and span_in_heights >= 4):
            boxes[lines] = boxes[root]
            lines += 1
    return boxes[:lines].copy()
