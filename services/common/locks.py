"""Locks by key within one process."""

from __future__ import annotations

import threading


class KeyedLocks:
    """One lock per key, made on first use: work on one key waits for itself, work on others goes on."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def __call__(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())
