"""The crawl itself: reader (candidates) → downloader (Fetcher) → writer (sink + manifest).

Plain inputs and outputs: the job handler and the CLI both call `discover` and `ingest_urls`
with their own sink and manifest.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from services.common.datasets import Character
from services.common.images import ImageRejectedError
from services.crawler.archives import Entry
from services.crawler.fetcher import Fetcher, FetchResult
from services.crawler.outputs import Candidate, ImageSink, Manifest, ManifestRecord
from services.crawler.sources import SearchError, Source, build_query


@dataclass(frozen=True)
class SearchOutcome:
    character: str
    query: str
    source: str
    found: int
    error: str | None = None


@dataclass
class Tally:
    """Running counts, per character too; what progress and the job result report."""

    total: int = 0
    counts: Counter[str] = field(default_factory=Counter)  # ok, duplicate, rejected, skipped, unused
    per_character: dict[str, Counter[str]] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def handled(self) -> int:
        return sum(self.counts.values())

    def add(self, group: str, status: str, reason: str | None = None) -> None:
        self.counts[status] += 1
        self.per_character.setdefault(group or "(none)", Counter())[status] += 1
        if reason:
            self.reasons[reason_class(reason)] += 1

    def message(self) -> str:
        counts = self.counts
        return (
            f"{counts['ok']} downloaded, {counts['duplicate']} duplicates, "
            f"{counts['rejected']} failed, {counts['skipped']} skipped, {counts['unused']} unused of {self.total}"
        )

    def summary(self) -> dict[str, object]:
        return {
            "downloaded": self.counts["ok"],
            "duplicates": self.counts["duplicate"],
            "rejected": self.counts["rejected"],
            "skipped": self.counts["skipped"],
            "unused": self.counts["unused"],
            "reasons": dict(self.reasons),
            "per_character": {group: dict(counts) for group, counts in self.per_character.items()},
        }


def reason_class(reason: str) -> str:
    """`HTTP 404`, `ssrf`, `not an image` … from a full reason, for counting."""
    return reason.split(":", 1)[0].split(" (", 1)[0][:60]


ProgressCallback = Callable[[Tally], None]


def character_queries(character: Character) -> list[str]:
    return [build_query(name, character.movie) for name in dict.fromkeys([character.character, *character.aliases])]


async def discover(
    characters: list[Character],
    default_limit: int,
    sources: list[Source],
    fetcher: Fetcher,
    oversample: float,
    on_query: Callable[[int, int, str], None] = lambda step, total, query: None,
) -> tuple[list[Candidate], list[SearchOutcome]]:
    """Search every character's queries; a source that fails or finds nothing falls back to the next.

    A character's wanted count is split over its queries (name + aliases), oversampled because
    some downloads fail; candidates are interleaved across queries so each alias contributes.
    """
    outcomes: list[SearchOutcome] = []
    candidates: list[Candidate] = []
    total = sum(len(character_queries(character)) for character in characters)
    step = 0
    for character in characters:
        queries = character_queries(character)
        per_query = math.ceil((character.limit or default_limit) * oversample / len(queries))
        per_query_candidates: list[list[Candidate]] = []
        for query in queries:
            on_query(step, total, query)
            step += 1
            found: list[Candidate] = []
            for source in sources:
                try:
                    urls = await source.search(query, per_query, fetcher)
                except SearchError as error:
                    outcomes.append(SearchOutcome(character.character, query, source.name, 0, str(error)))
                    continue
                outcomes.append(
                    SearchOutcome(
                        character.character, query, source.name, len(urls), None if urls else "no image URLs found"
                    )
                )
                if urls:
                    labels = {"query": query, "character": character.character, "movie": character.movie}
                    found = [Candidate(url=url, origin=source.name, **labels) for url in urls[:per_query]]
                    break
            per_query_candidates.append(found)
        interleaved = itertools.chain.from_iterable(itertools.zip_longest(*per_query_candidates))
        candidates.extend(candidate for candidate in interleaved if candidate is not None)
    return candidates, outcomes


class _Balancer:
    """Hands out candidates round-robin across characters, stopping a character at its limit.

    A character with `stored + in flight >= limit` gets no more downloads until one of its
    in-flight downloads fails; so the job fetches about `limit` images per character, not more.
    """

    def __init__(self, candidates: Iterable[Candidate], limits: dict[str, int | None], stored: Counter[str]) -> None:
        self.queues: dict[str, deque[Candidate]] = {}
        for candidate in candidates:
            self.queues.setdefault(candidate.group, deque()).append(candidate)
        self.order = deque(self.queues)
        self.limits, self.stored = limits, stored
        self.in_flight: Counter[str] = Counter()
        self.changed = asyncio.Condition()

    def _wants_more(self, group: str) -> bool:
        limit = self.limits.get(group)
        return limit is None or self.stored[group] + self.in_flight[group] < limit

    async def next(self) -> Candidate | None:
        async with self.changed:
            while True:
                for _ in range(len(self.order)):
                    group = self.order[0]
                    self.order.rotate(-1)
                    if self.queues[group] and self._wants_more(group):
                        self.in_flight[group] += 1
                        return self.queues[group].popleft()
                if not any(self.queues[group] and self.in_flight[group] for group in self.queues):
                    return None  # nothing left that a failing download could free up
                await self.changed.wait()

    async def finished(self, group: str, stored: bool) -> None:
        async with self.changed:
            self.in_flight[group] -= 1
            self.stored[group] += stored
            self.changed.notify_all()


def _record(candidate: Candidate, **fields: object) -> ManifestRecord:
    return ManifestRecord(
        url=candidate.url,
        origin=candidate.origin,
        query=candidate.query,
        character=candidate.character,
        movie=candidate.movie,
        **fields,
    )


async def _write(candidate: Candidate, fetched: FetchResult, sink: ImageSink) -> ManifestRecord:
    network = {
        "final_url": fetched.final_url,
        "http_status": fetched.http_status,
        "attempts": fetched.attempts,
        "content_type": fetched.content_type,
    }
    if fetched.data is None:
        return _record(candidate, status="rejected", reason=fetched.reason, retryable=fetched.retryable, **network)
    try:
        # Decoding and storing block (Pillow, S3); keep them off the event loop.
        stored = await asyncio.to_thread(sink.add, fetched.data, candidate)
    except ImageRejectedError as error:
        return _record(candidate, status="rejected", reason=str(error), bytes=len(fetched.data), **network)
    network["content_type"] = stored.content_type
    return _record(
        candidate,
        status="ok" if stored.new else "duplicate",
        sha256=stored.sha256,
        key=stored.key,
        bytes=len(fetched.data),
        width=stored.width,
        height=stored.height,
        **network,
    )


async def _guarded(coroutines: list[Coroutine[Any, Any, None]]) -> None:
    """Run workers together; the first failure (e.g. a cancel) cancels the rest and is re-raised as is."""
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                group.create_task(coroutine)
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None


async def ingest_urls(
    candidates: list[Candidate],
    limits: dict[str, int | None],
    fetcher: Fetcher,
    sink: ImageSink,
    manifest: Manifest,
    tally: Tally,
    on_progress: ProgressCallback,
    concurrency: int,
) -> Tally:
    """Download candidates concurrently into the sink; each URL gets one manifest record."""
    stored: Counter[str] = Counter()
    pending: list[Candidate] = []
    seen: set[str] = set()
    for candidate in candidates:
        if candidate.url in seen:
            continue
        seen.add(candidate.url)
        earlier = manifest.done.get(candidate.url)
        if earlier is None:
            pending.append(candidate)
            continue
        tally.add(candidate.group, "skipped")
        stored[candidate.group] += earlier.status == "ok"
    tally.total += len(seen)
    balancer = _Balancer(pending, limits, stored)

    async def worker() -> None:
        while (candidate := await balancer.next()) is not None:
            newly_stored = False
            try:
                record = await _write(candidate, await fetcher.fetch(candidate.url), sink)
                newly_stored = record.status == "ok"
            finally:
                await balancer.finished(candidate.group, newly_stored)
            manifest.append(record)
            tally.add(candidate.group, record.status, record.reason)
            on_progress(tally)

    await _guarded([worker() for _ in range(max(1, concurrency))])
    for group, queue in balancer.queues.items():
        for _ in queue:
            tally.add(group, "unused")  # search results left over once the character had its limit
    return tally


def _folder_key(name: str) -> str:
    return " ".join(name.replace("_", " ").replace("-", " ").casefold().split())


async def ingest_entries(
    entries: Iterable[Entry],
    origin: str,
    prefix: str,
    sink: ImageSink,
    manifest: Manifest,
    tally: Tally,
    on_progress: ProgressCallback,
    characters: Iterable[Character] = (),
) -> Tally:
    """Folder or zip entries into the sink; `prefix` makes each entry's manifest URL (`zip:<file>/<name>`).

    An entry under a folder named after a character (`Kiki/001.png`, `howl_pendragon/x.jpg`) is
    attributed to that character and film, so per-character counts and caps work for imports too.
    """
    by_folder = {
        _folder_key(name): character for character in characters for name in [character.character, *character.aliases]
    }
    for entry in entries:
        top_folder = entry.name.split("/", 1)[0] if "/" in entry.name else ""
        character = by_folder.get(_folder_key(top_folder))
        candidate = Candidate(
            url=f"{prefix}{entry.name}",
            origin=origin,
            character=character.character if character else None,
            movie=character.movie if character else None,
        )
        tally.total += 1
        if candidate.url in manifest.done:
            tally.add(candidate.group, "skipped")
        else:
            fetched = FetchResult(candidate.url, candidate.url, entry.data, None, None, entry.reason, False, 1)
            record = await _write(candidate, fetched, sink)
            manifest.append(record)
            tally.add(candidate.group, record.status, record.reason)
        on_progress(tally)
    return tally
