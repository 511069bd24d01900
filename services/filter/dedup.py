"""Exact and near-duplicate grouping.

Near duplicates are found with multi-index hashing instead of comparing all pairs: the 64 hash
bits are cut into `m` blocks, and two hashes within Hamming distance `t` (< m) must agree exactly
on at least `m - t` of those blocks (pigeonhole). For every choice of `m - t` blocks the hashes
are sorted by those bits; only hashes sharing a key are compared. `m` trades the number of
tables (more blocks, more tables) against the candidates in each (more agreeing bits, fewer).
The chosen blocks are packed into one key of at most 64 bits and sorted by LSD radix sort in
16-bit digits (NumPy's stable sort of uint16 is a counting sort): a 2-digit key sorts about 4×
faster than an argsort of the raw hashes, which is what makes many tables affordable.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations, pairwise

import imagehash
import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

HASH_BITS = 64
PHASH_SIDE = 32  # imagehash.phash's input side for a 64-bit hash (hash_size 8 × highfreq_factor 4)
MAX_TABLES = 20_000
DIGIT_BITS = 16
# Measured at 1M hashes, in units of one radix pass over one hash (~10 ns): a table also packs its key,
# gathers and finds runs (about two passes more), and each candidate pair costs ~2.5 (random gathers).
TABLE_PASSES = 2
CANDIDATE_COST = 2.5

_HASHERS = {
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
    "whash": imagehash.whash,
    "average_hash": imagehash.average_hash,
}


def perceptual_hash(image: Image.Image, method: str = "phash") -> int:
    """A 64-bit perceptual hash as an unsigned integer."""
    if method == "phash":
        # phash reads a 32×32 grey copy; a box pre-reduction (reducing_gap) makes that copy cheap on big pictures.
        image = image.convert("L").resize((PHASH_SIDE, PHASH_SIDE), Image.Resampling.LANCZOS, reducing_gap=2.0)
    bits = _HASHERS[method](image).hash.ravel()
    return int("".join("1" if bit else "0" for bit in bits), 2)


def hamming(first: int, second: int) -> int:
    return (first ^ second).bit_count()


def _block_edges(blocks: int) -> list[tuple[int, int]]:
    """`blocks` contiguous bit ranges [start, end) covering 64 bits, sizes differing by at most one."""
    edges = [round(index * HASH_BITS / blocks) for index in range(blocks + 1)]
    return list(pairwise(edges))


def choose_blocks(count: int, max_distance: int) -> int:
    """The block count with the least estimated work: tables × (radix passes + candidates to check)."""
    best, best_cost = max_distance + 1, math.inf
    for blocks in range(max_distance + 1, HASH_BITS + 1):
        tables = math.comb(blocks, max_distance)
        if tables > MAX_TABLES:
            break
        agreeing_bits = HASH_BITS * (blocks - max_distance) / blocks
        # Uniform hashes: count²/2 pairs, of which 2^-agreeing_bits share a table key.
        candidates = count * count / 2 / 2**agreeing_bits
        passes = math.ceil(agreeing_bits / DIGIT_BITS) + TABLE_PASSES
        cost = tables * (count * passes + CANDIDATE_COST * candidates)
        if cost < best_cost:
            best, best_cost = blocks, cost
    return best


def _packed_key(hashes: np.ndarray, chosen: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, int]:
    """The bits of the chosen blocks side by side in one integer per hash, and how many bits that is."""
    ranges: list[tuple[int, int]] = []
    for start, end in chosen:  # neighbouring blocks are one range: fewer passes over the hashes
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], end)
        else:
            ranges.append((start, end))
    key = np.zeros(len(hashes), dtype=np.uint64)
    bits = 0
    for start, end in ranges:
        key |= ((hashes >> np.uint64(start)) & np.uint64((1 << (end - start)) - 1)) << np.uint64(bits)
        bits += end - start
    return key, bits


def _radix_order(key: np.ndarray, bits: int) -> np.ndarray:
    """Indices that sort `key`: least significant 16-bit digit first, each pass a stable counting sort."""
    order = np.argsort((key & np.uint64(0xFFFF)).astype(np.uint16), kind="stable")
    for shift in range(DIGIT_BITS, bits, DIGIT_BITS):
        digit = ((key[order] >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
    return order


def _table_pairs(hashes: np.ndarray, chosen: tuple[tuple[int, int], ...], max_distance: int) -> list[np.ndarray]:
    """The close pairs among hashes that agree on the `chosen` blocks."""
    count = len(hashes)
    key, bits = _packed_key(hashes, chosen)
    order = _radix_order(key, bits)
    sorted_keys = key[order]
    # Runs of equal keys; a hash at position p of its run pairs with the p hashes before it.
    run_starts = np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))
    run_lengths = np.diff(np.append(run_starts, count))
    position = np.arange(count) - np.repeat(run_starts, run_lengths)
    # Offset 1, 2, …: only hashes at least that far into their run take part, so the work is the candidates.
    later = np.flatnonzero(position >= 1)
    offset, found = 1, []
    while len(later):
        left, right = order[later - offset], order[later]
        close = np.bitwise_count(hashes[left] ^ hashes[right]) <= max_distance
        if close.any():
            found.append(np.stack([np.minimum(left, right)[close], np.maximum(left, right)[close]], axis=1))
        offset += 1
        later = later[position[later] >= offset]
    return found


def near_pairs(hashes: np.ndarray, max_distance: int, threads: int | None = None) -> np.ndarray:
    """Index pairs (i < j) of distinct hashes within `max_distance`; `hashes` must be unique uint64.

    Tables run on `threads` threads (default: one per core): NumPy's sorts, gathers and ufuncs
    release the GIL.
    """
    count = len(hashes)
    if count < 2 or max_distance == 0:
        return np.empty((0, 2), dtype=np.int64)  # unique hashes have no pair at distance 0
    blocks = choose_blocks(count, max_distance)
    tables = combinations(_block_edges(blocks), blocks - max_distance)
    threads = threads or len(os.sched_getaffinity(0))
    with ThreadPoolExecutor(threads) as pool:
        found = [
            pairs
            for part in pool.map(lambda chosen: _table_pairs(hashes, chosen, max_distance), tables)
            for pairs in part
        ]
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found), axis=0)


def group_by_hash(hashes: list[int], max_distance: int) -> list[int]:
    """A group label per hash: equal labels are (transitively) within `max_distance` of each other."""
    if not hashes:
        return []
    values = np.array(hashes, dtype=np.uint64)
    unique, inverse = np.unique(values, return_inverse=True)
    pairs = near_pairs(unique, max_distance)
    graph = coo_matrix(
        (np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(len(unique), len(unique))
    )
    _, labels = connected_components(graph, directed=False)
    return [int(label) for label in labels[inverse.ravel()]]


def group_by_key(keys: list[str]) -> list[int]:
    """A group label per key: equal keys (e.g. pixel MD5s) share a label."""
    labels: dict[str, int] = {}
    return [labels.setdefault(key, len(labels)) for key in keys]
