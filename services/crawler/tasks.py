"""`run_crawl`: search the dataset's characters, download, import lists and archives; resumable."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from services.common.datasets import Character, DatasetRepository
from services.common.jobs import JobContext
from services.common.metrics import IMAGES_PROCESSED
from services.crawler.archives import iter_zip
from services.crawler.crawl import SearchOutcome, Tally, discover, ingest_entries, ingest_urls
from services.crawler.fetcher import Fetcher
from services.crawler.outputs import Candidate, DatasetSink, StoreManifest
from services.crawler.params import CrawlParams
from services.crawler.settings import CrawlerSettings
from services.crawler.sources import SOURCES, parse_url_list


def run_crawl(ctx: JobContext) -> dict[str, Any]:
    return asyncio.run(_crawl(ctx, ctx.params, CrawlerSettings()))


def _report(ctx: JobContext, tally: Tally) -> None:
    metrics = {status: float(count) for status, count in tally.counts.items()}
    ctx.progress(tally.handled, tally.total, tally.message(), metrics)


async def _plan(
    ctx: JobContext, params: CrawlParams, characters: list[Character], fetcher: Fetcher, settings: CrawlerSettings
) -> tuple[list[Candidate], list[SearchOutcome]]:
    """The job's candidate URLs, searched once: a rerun reuses the saved plan rather than searching again."""
    plan_key = f"datasets/{params.dataset_id}/crawl/{ctx.job.id}/candidates.json"
    if ctx.store.exists(plan_key):
        saved = ctx.store.get_json(plan_key)
        return [Candidate.model_validate(item) for item in saved["candidates"]], [
            SearchOutcome(**item) for item in saved["searches"]
        ]
    candidates: list[Candidate] = []
    searches: list[SearchOutcome] = []
    if params.search and characters:
        sources = [SOURCES[name]() for name in params.sources]
        found, searches = await discover(
            characters,
            params.limit_per_character,
            sources,
            fetcher,
            settings.search_oversample,
            on_query=lambda step, total, query: ctx.progress(step, total, f"searching: {query}"),
        )
        candidates.extend(found)
    listed = list(parse_url_list("\n".join(params.urls)))
    if params.url_list_key:
        listed.extend(parse_url_list(ctx.store.get_bytes(params.url_list_key).decode("utf-8", "replace")))
    candidates.extend(
        Candidate(url=item.url, origin="url-list", query=item.query, character=item.character, movie=item.movie)
        for item in listed
    )
    ctx.store.put_json(
        plan_key,
        {"candidates": [item.model_dump() for item in candidates], "searches": [asdict(item) for item in searches]},
    )
    return candidates, searches


async def _crawl(ctx: JobContext, params: CrawlParams, settings: CrawlerSettings) -> dict[str, Any]:
    dataset = DatasetRepository(ctx.store).get(params.dataset_id)
    characters = params.characters if params.characters is not None else dataset.characters
    manifest = StoreManifest(ctx.store, dataset.id, ctx.job.id, settings.manifest_flush_every)
    sink = DatasetSink(ctx.store, dataset.id, settings.max_pixels, ctx.job.id)
    tally = Tally()
    try:
        async with Fetcher(settings) as fetcher:
            candidates, searches = await _plan(ctx, params, characters, fetcher, settings)
            if not candidates and not params.archive_key:
                failures = "; ".join(f'{item.source} "{item.query}": {item.error}' for item in searches)
                raise RuntimeError(f"nothing to download: no search found image URLs ({failures or 'no characters'})")
            limits: dict[str, int | None] = {
                character.character: character.limit or params.limit_per_character for character in characters
            }
            await ingest_urls(
                candidates,
                limits,
                fetcher,
                sink,
                manifest,
                tally,
                lambda current: _report(ctx, current),
                settings.concurrency,
            )
        if params.archive_key:
            archive = ctx.store.download(params.archive_key, ctx.scratch_dir() / "archive.zip")
            await ingest_entries(
                iter_zip(archive),
                "zip",
                f"zip:{params.archive_key}/",
                sink,
                manifest,
                tally,
                lambda current: _report(ctx, current),
                characters,
            )
    finally:
        manifest_key = manifest.close()
    _report(ctx, tally)
    IMAGES_PROCESSED.labels("crawl").inc(tally.counts["ok"])
    return {"manifest": manifest_key, **tally.summary(), "searches": [asdict(item) for item in searches]}
