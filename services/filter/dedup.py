"""Exact and near-duplicate grouping.

All pairs of a million hashes are 5·10¹¹ comparisons, so near duplicates are found by pigeonhole:
the 64 bits are cut into `m` blocks, and two hashes within Hamming distance `d` (< m) agree
exactly on at least `m - d` of them, so only hashes sharing `m - d` blocks (a table) need
comparing. More blocks mean more tables but fewer hashes sharing a key; a cost model picks `m`.

Tables are walked as a tree rather than sorted one by one, because sorting dominates otherwise:
tables that start with the same blocks share the sorts by those blocks, and every sort below the
first splits a bucket that fits in cache by one block of a few bits (a counting sort over a few
dozen buckets). Buckets carry their hashes, not just indices, so the final all-pairs scan of a
bucket reads memory in order (~1 ns a pair, where NumPy's gathers cost ~25 ns); a bucket too
small to be worth splitting is scanned whole. A close pair is reported only by the node whose
blocks are the first ones it agrees on, so each is found once, and it goes straight into a
union-find: a big cluster of near-identical frames never becomes a list of pairs. The numba code
releases the GIL, so threads share out the subtrees, each with its own union-find, merged at the
end. 1M hashes at distance 10 take ~5 s on 2 cores (47 s with the former NumPy multi-index).

Compiled code is cached in `__pycache__` beside this file, or under `NUMBA_CACHE_DIR` (set by the
filter image, whose installed source tree is read-only): compiling takes ~4 s, loading ~0.4 s.
"""

from __future__ import annotations

import math
import os
import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise

import cv2
import imagehash
import numpy as np
from numba import njit, types
from numba.extending import intrinsic
from PIL import Image

from services.filter.imaging import resize_pixels
from services.filter.union_find import find, union

HASH_BITS = 64
PHASH_SIDE = 32  # imagehash.phash's input side for a 64-bit hash (hash_size 8 × highfreq_factor 4)
MAX_BLOCK_BITS = 16  # a counting sort's buckets: 2^16 at most
# Fitted to timings on 1M hashes: a hash through one sort costs about as much as 16 pair comparisons.
SORT_COST = 16
CHUNKS_PER_THREAD = 4  # first-level buckets are handed out in this many pieces per thread

_HASHERS = {
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
    "whash": imagehash.whash,
    "average_hash": imagehash.average_hash,
}


def perceptual_hash(pixels: np.ndarray, method: str = "phash") -> int:
    """A 64-bit perceptual hash of RGB or grey pixels (uint8) as an unsigned integer (every method reads grey)."""
    grey = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    grey = np.ascontiguousarray(grey)  # a mirrored view has a negative stride
    if method == "phash":
        # phash reads a 32×32 grey copy; halvings (2×2 averages) make it in 0.05 ms, an area filter in 0.16.
        grey = resize_pixels(grey, PHASH_SIDE, PHASH_SIDE)
    bits = _HASHERS[method](Image.fromarray(grey)).hash.ravel()
    return int("".join("1" if bit else "0" for bit in bits), 2)


def hamming(first: int, second: int) -> int:
    return (first ^ second).bit_count()


def choose_blocks(count: int, max_distance: int) -> int:
    """The block count with the least estimated work; `max_distance` itself means comparing all pairs."""
    best, best_cost = max_distance, count * count / 2
    for blocks in range(max(max_distance + 1, math.ceil(HASH_BITS / MAX_BLOCK_BITS)), HASH_BITS + 1):
        depth, bits = blocks - max_distance, HASH_BITS / blocks
        buckets = 2 ** math.ceil(bits)
        # Level j sorts every node of level j - 1 once per allowed j-th block: C(d + j, j) prefixes in all.
        sorted_hashes = sum(
            math.comb(max_distance + level, level) * (count + min(count, 2 ** ((level - 1) * bits)) * buckets)
            for level in range(1, depth + 1)
        )
        # Uniform hashes: count²/2 pairs, of which 2^-(depth × bits) share a table's key.
        candidates = math.comb(blocks, depth) * count * count / 2 / 2 ** (depth * bits)
        cost = SORT_COST * sorted_hashes + candidates
        if cost < best_cost:
            best, best_cost = blocks, cost
    return best


@intrinsic
def _popcount(typingctx: object, value: types.Type) -> tuple[types.Signature, object]:
    """The CPU's popcount instruction (numba has no np.bitwise_count)."""

    def codegen(context: object, builder: object, signature: object, args: list) -> object:
        return builder.ctpop(args[0])

    return types.int64(types.uint64), codegen


@njit(nogil=True, cache=True)
def _sort_by_block(
    source_hashes: np.ndarray,
    source_indices: np.ndarray,
    hashes: np.ndarray,
    indices: np.ndarray,
    low: int,
    high: int,
    shift: np.uint64,
    width: int,
    ends: np.ndarray,
) -> int:
    """Counting sort of positions [low, high) by one block; returns the bucket count, ends[k] = end of bucket k."""
    buckets = 1 << width
    mask = np.uint64(buckets - 1)
    ends[:buckets] = 0
    for position in range(low, high):
        ends[(source_hashes[position] >> shift) & mask] += 1
    start = low
    for bucket in range(buckets):
        size = ends[bucket]
        ends[bucket] = start
        start += size
    for position in range(low, high):
        bucket = (source_hashes[position] >> shift) & mask
        target = ends[bucket]
        hashes[target] = source_hashes[position]
        indices[target] = source_indices[position]
        ends[bucket] = target + 1
    return buckets


@njit(nogil=True, cache=True)
def _first_agreeing(xor: np.uint64, prefix: np.ndarray, depth: int, block_masks: np.ndarray) -> bool:
    """Whether the node's blocks prefix[1..depth] are the first `depth` blocks the pair agrees on."""
    chosen = 1
    for block in range(prefix[depth] if depth else 0):
        if block == prefix[chosen]:
            chosen += 1
        elif xor & block_masks[block] == 0:
            return False
    return True


@njit(nogil=True, cache=True)
def _report(first: int, second: int, parent: np.ndarray, pairs: np.ndarray, found: int) -> tuple[np.ndarray, int]:
    """Joins two indices in `parent`, or when that is empty (collecting) appends them to `pairs`."""
    if len(parent):
        union(parent, first, second)
        return pairs, found
    if found == len(pairs):
        pairs = np.concatenate((pairs, np.empty_like(pairs)))  # (copying with a slice takes seconds to compile)
    pairs[found, 0], pairs[found, 1] = min(first, second), max(first, second)
    return pairs, found + 1


@njit(nogil=True, cache=True)
def _compare_all(
    hashes: np.ndarray,
    indices: np.ndarray,
    low: int,
    high: int,
    max_distance: int,
    prefix: np.ndarray,
    depth: int,
    block_masks: np.ndarray,
    parent: np.ndarray,
    pairs: np.ndarray,
    found: int,
) -> tuple[np.ndarray, int]:
    """Reports the close pairs among positions [low, high) that this node is the first to see."""
    for first in range(low, high - 1):
        value = hashes[first]
        close = 0
        for second in range(first + 1, high):  # no branch: LLVM vectorises it, and close pairs are rare
            close += _popcount(value ^ hashes[second]) <= max_distance
        if not close:
            continue
        for second in range(first + 1, high):
            xor = value ^ hashes[second]
            if _popcount(xor) <= max_distance and _first_agreeing(xor, prefix, depth, block_masks):
                pairs, found = _report(indices[first], indices[second], parent, pairs, found)
    return pairs, found


@njit(nogil=True, cache=True)
def _explore(
    level_hashes: np.ndarray,
    level_indices: np.ndarray,
    first_block: int,
    first_ends: np.ndarray,
    first_bucket: int,
    last_bucket: int,
    max_distance: int,
    shifts: np.ndarray,
    widths: np.ndarray,
    block_masks: np.ndarray,
    ends: np.ndarray,
    parent: np.ndarray,
    pairs: np.ndarray,
    found: int,
) -> tuple[np.ndarray, int]:
    """Depth-first walk below buckets [first_bucket, last_bucket) of the sort by `first_block`.

    Row t of level_* holds the nodes of level t - 1 re-sorted by block prefix[t]; a node writes only
    inside its own range of positions, so walks below different buckets share the rows.
    """
    depth = len(level_hashes) - 1
    prefix, cursor, stop = np.zeros(depth + 1, np.int64), np.zeros(depth + 1, np.int64), np.zeros(depth + 1, np.int64)
    low, high = np.zeros(depth + 1, np.int64), np.zeros(depth + 1, np.int64)
    prefix[1], cursor[1], stop[1] = first_block, first_bucket, last_bucket
    for bucket in range(last_bucket):
        ends[1, bucket] = first_ends[bucket]
    level = 1
    while level:
        if cursor[level] < stop[level]:
            bucket = cursor[level]
            cursor[level] += 1
            start = ends[level, bucket - 1] if bucket else low[level]
            end = ends[level, bucket]
            size = end - start
            if size < 2:
                continue
            children = max_distance + level - prefix[level]  # blocks left for level + 1
            # A leaf, or a node whose pairs cost less than sorting it once per child: compare all its pairs.
            if level == depth or size * (size - 1) // 2 <= SORT_COST * children * (size + ends.shape[1]):
                pairs, found = _compare_all(
                    level_hashes[level],
                    level_indices[level],
                    start,
                    end,
                    max_distance,
                    prefix,
                    level,
                    block_masks,
                    parent,
                    pairs,
                    found,
                )
                continue
            level += 1
            low[level], high[level], prefix[level] = start, end, prefix[level - 1] + 1
        elif level > 1 and prefix[level] < max_distance + level - 1:  # the next block for this level
            prefix[level] += 1
        else:
            level -= 1
            continue
        block = prefix[level]
        stop[level] = _sort_by_block(
            level_hashes[level - 1],
            level_indices[level - 1],
            level_hashes[level],
            level_indices[level],
            low[level],
            high[level],
            shifts[block],
            widths[block],
            ends[level],
        )
        cursor[level] = 0
    return pairs, found


@njit(nogil=True, cache=True)
def _merge_into(parent: np.ndarray, other: np.ndarray) -> None:
    for node in range(len(other)):
        root = find(other, node)
        if root != node:
            union(parent, node, root)


@njit(nogil=True, cache=True)
def _component_labels(parent: np.ndarray) -> np.ndarray:
    """0, 1, … in order of each component's first member (its root)."""
    labels = np.empty(len(parent), dtype=np.int64)
    next_label = 0
    for node in range(len(parent)):
        root = find(parent, node)
        if root == node:
            labels[node] = next_label
            next_label += 1
        else:
            labels[node] = labels[root]
    return labels


@dataclass
class _Worker:
    """One thread's share: its union-find (empty when collecting pairs) and the pairs it found."""

    ends: np.ndarray
    parent: np.ndarray
    pairs: np.ndarray = field(default_factory=lambda: np.empty((1024, 2), dtype=np.int64))
    found: int = 0


def _search(hashes: np.ndarray, max_distance: int, collect: bool, threads: int | None) -> list[_Worker]:
    """Every close pair of `hashes`, joined in the workers' union-finds or (`collect`) listed in them."""
    count = len(hashes)
    blocks = choose_blocks(count, max_distance)
    depth = blocks - max_distance
    edges = [round(index * HASH_BITS / blocks) for index in range(blocks + 1)] if depth else [0]
    shifts = np.array(edges[:-1], dtype=np.uint64)
    widths = np.array([end - start for start, end in pairwise(edges)], dtype=np.int64)
    block_masks = ((np.uint64(1) << widths.astype(np.uint64)) - np.uint64(1)) << shifts
    threads = (threads or len(os.sched_getaffinity(0))) if depth else 1
    workers = [
        _Worker(
            ends=np.zeros((depth + 1, 1 << int(widths.max(initial=0))), dtype=np.int64),
            parent=np.empty(0, dtype=np.int32) if collect else np.arange(count, dtype=np.int32),
        )
        for _ in range(threads)
    ]
    level_hashes = np.empty((depth + 1, count), dtype=np.uint64)
    level_indices = np.empty((depth + 1, count), dtype=np.int32)
    level_hashes[0], level_indices[0] = hashes, np.arange(count)
    if not depth:
        only = workers[0]
        only.pairs, only.found = _compare_all(
            hashes,
            level_indices[0],
            0,
            count,
            max_distance,
            np.zeros(1, np.int64),
            0,
            block_masks,
            only.parent,
            only.pairs,
            0,
        )
        return workers

    idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
    for worker in workers:
        idle.put(worker)
    first_ends = np.zeros(workers[0].ends.shape[1], dtype=np.int64)

    def walk(first_block: int, buckets: tuple[int, int]) -> None:
        worker = idle.get()
        try:
            worker.pairs, worker.found = _explore(
                level_hashes,
                level_indices,
                first_block,
                first_ends,
                buckets[0],
                buckets[1],
                max_distance,
                shifts,
                widths,
                block_masks,
                worker.ends,
                worker.parent,
                worker.pairs,
                worker.found,
            )
        finally:
            idle.put(worker)

    with ThreadPoolExecutor(threads) as pool:
        for first_block in range(max_distance + 1):  # the first block of a table is one of the first d + 1
            buckets = _sort_by_block(
                level_hashes[0],
                level_indices[0],
                level_hashes[1],
                level_indices[1],
                0,
                count,
                shifts[first_block],
                widths[first_block],
                first_ends,
            )
            # Cut the buckets into pieces of about equal hash counts.
            pieces = threads * CHUNKS_PER_THREAD
            cuts = np.searchsorted(first_ends[:buckets], np.arange(1, pieces) * count / pieces)
            bounds = np.unique(np.concatenate(([0], cuts, [buckets])))
            list(pool.map(partial(walk, first_block), pairwise(bounds.tolist())))
    return workers


def near_pairs(hashes: np.ndarray, max_distance: int, threads: int | None = None) -> np.ndarray:
    """Index pairs (i < j, sorted) of hashes within `max_distance`; `hashes` must be unique uint64.

    Runs on `threads` threads (default: one per core).
    """
    if len(hashes) < 2 or max_distance == 0:
        return np.empty((0, 2), dtype=np.int64)  # unique hashes have no pair at distance 0
    found = np.concatenate([worker.pairs[: worker.found] for worker in _search(hashes, max_distance, True, threads)])
    return found[np.lexsort((found[:, 1], found[:, 0]))]


def group_by_hash(hashes: list[int], max_distance: int, threads: int | None = None) -> list[int]:
    """A group label per hash: equal labels are (transitively) within `max_distance` of each other.

    Runs on `threads` threads (default: one per core).
    """
    if not hashes:
        return []
    unique, inverse = np.unique(np.array(hashes, dtype=np.uint64), return_inverse=True)
    if len(unique) < 2 or max_distance == 0:
        return inverse.ravel().tolist()
    first, *others = _search(unique, max_distance, False, threads)
    for other in others:
        _merge_into(first.parent, other.parent)
    return _component_labels(first.parent)[inverse.ravel()].tolist()
