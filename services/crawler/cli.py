"""`ghibli-lora crawl`: characters/URL list/folder/zip → a local folder, or a dataset on a server with --api."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import TypeAdapter, ValidationError

from services.common.cli_support import ApiOption, TokenOption
from services.common.client import ApiClient, ApiError
from services.common.datasets import Character
from services.common.params import load_yaml
from services.crawler.archives import ArchiveError, Entry, iter_folder, iter_zip
from services.crawler.crawl import Tally, discover, ingest_entries, ingest_urls
from services.crawler.fetcher import Fetcher
from services.crawler.outputs import Candidate, FolderManifest, FolderSink
from services.crawler.settings import CrawlerSettings
from services.crawler.sources import SOURCES, parse_url_list

UPLOAD_BATCH_FILES = 50
UPLOAD_BATCH_BYTES = 32 * 1024 * 1024  # below the gateway's default 50 MB body limit


def load_characters(path: Path) -> list[Character]:
    """A YAML/JSON list of {character, movie, aliases, limit}, or a mapping with a `characters` list."""
    try:
        raw = load_yaml(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read characters file {path}: {error}") from None
    if isinstance(raw, dict):
        raw = raw.get("characters")
    try:
        return TypeAdapter(list[Character]).validate_python(raw)
    except ValidationError as error:
        raise ValueError(f"invalid characters file {path}:\n{error}") from None


def _entries(folder: Path | None, archive: Path | None) -> Iterator[tuple[str, str, Iterable[Entry]]]:
    """(origin, manifest URL prefix, entries) for each local import asked for."""
    if folder:
        yield "folder", f"file:{folder.resolve()}/", iter_folder(folder)
    if archive:
        yield "zip", f"zip:{archive.resolve()}/", iter_zip(archive)


async def _crawl_locally(
    characters: list[Character],
    limit: int,
    source_names: list[str],
    urls: list[Candidate],
    imports: Iterator[tuple[str, str, Iterable[Entry]]],
    out: Path,
) -> dict[str, Any]:
    settings = CrawlerSettings()
    sink, manifest, tally = FolderSink(out, settings.max_pixels), FolderManifest(out), Tally()

    def show(current: Tally) -> None:
        typer.echo(f"\r{current.message()}", nl=False, err=True)

    try:
        async with Fetcher(settings) as fetcher:
            found, searches = await discover(
                characters, limit, [SOURCES[name]() for name in source_names], fetcher, settings.search_oversample
            )
            for search in searches:
                if search.error:
                    typer.echo(f'{search.source} "{search.query}": {search.error}', err=True)
            limits: dict[str, int | None] = {item.character: item.limit or limit for item in characters}
            await ingest_urls(found + urls, limits, fetcher, sink, manifest, tally, show, settings.concurrency)
        for origin, prefix, entries in imports:
            await ingest_entries(entries, origin, prefix, sink, manifest, tally, show, characters)
    finally:
        manifest_path = manifest.close()
        typer.echo("", err=True)
    return {"out": str(out), "manifest": manifest_path, **tally.summary()}


def _upload(client: ApiClient, dataset_id: str, entries: Iterable[Entry]) -> dict[str, int]:
    """Send image files through the gateway in batches under its body limit; count the outcomes."""
    counts: dict[str, int] = {}
    batch: list[Entry] = []

    def send() -> None:
        files = [("files", (Path(entry.name).name, entry.data)) for entry in batch]
        response = client.http.post(f"/v1/datasets/{dataset_id}/images", files=files)
        if response.is_error:
            raise ApiError(f"upload to {dataset_id} → {response.status_code}: {response.text[:300]}")
        for outcome in response.json():
            counts[outcome["status"]] = counts.get(outcome["status"], 0) + 1
        batch.clear()

    for entry in entries:
        if entry.data is None:
            counts["rejected"] = counts.get("rejected", 0) + 1
            typer.echo(f"{entry.name}: {entry.reason}", err=True)
            continue
        if batch and (
            len(batch) >= UPLOAD_BATCH_FILES
            or sum(len(item.data or b"") for item in batch) + len(entry.data) > UPLOAD_BATCH_BYTES
        ):
            send()
        batch.append(entry)
    if batch:
        send()
    return counts


def crawl(
    characters_file: Annotated[
        Path | None, typer.Option("--characters", help="YAML/JSON list of {character, movie, aliases, limit}.")
    ] = None,
    character: Annotated[str | None, typer.Option(help="One character to search for (with --movie).")] = None,
    movie: Annotated[str | None, typer.Option(help="The character's film.")] = None,
    alias: Annotated[list[str] | None, typer.Option(help="Another name to search for (repeatable).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Images per character unless the file sets `limit`.")] = 50,
    source: Annotated[list[str] | None, typer.Option(help="Search engines in fallback order (repeatable).")] = None,
    urls: Annotated[Path | None, typer.Option(help="A .txt/.csv list of image URLs.")] = None,
    folder: Annotated[Path | None, typer.Option(help="Import the images in this folder.")] = None,
    archive: Annotated[Path | None, typer.Option("--zip", help="Import the images in this zip.")] = None,
    out: Annotated[
        Path, typer.Option(help="Local output folder (<character>/<sha256>.<ext> + manifest.jsonl).")
    ] = Path("crawl-out"),
    api: ApiOption = None,
    token: TokenOption = None,
    dataset: Annotated[str | None, typer.Option(help="With --api: add to this dataset instead of a new one.")] = None,
    name: Annotated[str, typer.Option(help="With --api: name of the new dataset.")] = "ghibli",
) -> None:
    """Collect character images: search, URL list, folder or zip; safe downloads, a manifest, resumable."""
    source_names = source or ["simple_image_download", "bing"]
    unknown = sorted(set(source_names) - set(SOURCES))
    if unknown:
        raise typer.BadParameter(f"unknown source(s) {unknown}; choose from {sorted(SOURCES)}", param_hint="--source")
    if bool(character) != bool(movie):
        raise typer.BadParameter("--character and --movie go together")
    try:
        wanted = load_characters(characters_file) if characters_file else []
        if character and movie:
            wanted.append(Character(character=character, movie=movie, aliases=alias or [], limit=limit))
        url_lines = urls.read_text(encoding="utf-8", errors="replace").splitlines() if urls else []
        listed = [
            Candidate(url=item.url, origin="url-list", query=item.query, character=item.character, movie=item.movie)
            for item in parse_url_list("\n".join(url_lines))
        ]
        if not (wanted or listed or folder or archive):
            raise typer.BadParameter("nothing to do: give --characters, --character/--movie, --urls, --folder or --zip")
        if api:
            result = _crawl_via_api(
                api, token, dataset, name, wanted, limit, source_names, listed, _entries(folder, archive)
            )
        else:
            result = asyncio.run(_crawl_locally(wanted, limit, source_names, listed, _entries(folder, archive), out))
    except (ValueError, ArchiveError, ApiError, OSError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(result, indent=2, default=str))


def _crawl_via_api(
    api: str,
    token: str | None,
    dataset_id: str | None,
    name: str,
    characters: list[Character],
    limit: int,
    source_names: list[str],
    url_lines: list[str],
    imports: Iterator[tuple[str, str, Iterable[Entry]]],
) -> dict[str, Any]:
    client = ApiClient(api, token)
    if dataset_id is None:
        dataset_id = client.create_dataset(name, [item.model_dump() for item in characters])["id"]
    result: dict[str, Any] = {"dataset_id": dataset_id}
    for origin, _, entries in imports:
        result[f"{origin}_upload"] = _upload(client, dataset_id, entries)
    if characters or url_lines:
        job_id = client.submit_job(
            "crawl",
            {
                "dataset_id": dataset_id,
                "characters": [item.model_dump() for item in characters],
                "sources": source_names,
                "limit_per_character": limit,
                "urls": url_lines,  # the job parses them as a .txt/.csv list, labels included
            },
        )
        final = client.follow(job_id)
        result.update(job_id=job_id, state=final["state"], error=final.get("error"), result=final.get("result"))
    return result


def register(app: typer.Typer) -> None:
    app.command("crawl")(crawl)
