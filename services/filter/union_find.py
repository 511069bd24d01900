"""Disjoint sets over a parent array (compiled with numba): the smallest index of a set is its root."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def find(parent: np.ndarray, node: int) -> int:
    while parent[node] != node:
        parent[node] = parent[parent[node]]  # path halving keeps later look-ups short
        node = parent[node]
    return node


@njit(nogil=True, cache=True)
def union(parent: np.ndarray, first: int, second: int) -> None:
    first, second = find(parent, first), find(parent, second)
    if first < second:
        parent[second] = first
    elif second < first:
        parent[first] = second
