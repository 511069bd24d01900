"""The crawl job end to end over both stores: searches, misbehaving hosts, manifest, limits, resume."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from services.common.datasets import Character, DatasetRepository
from services.common.jobs import JobRepository, JobState
from services.common.runner import execute_job
from services.common.settings import Settings
from services.common.storage import ObjectStore
from services.crawler import sources
from services.crawler.fetcher import Fetcher
from tests.crawler.hosts import (
    MisbehavingServer,
    cut_short,
    endless,
    failing_then,
    image,
    jpeg_bytes,
    pixel_bomb_png,
    redirect,
    slow,
)
from tests.support import png_bytes

# Two URLs serving the same bytes; they download concurrently, so either may be the one stored.
TWINS = ("/good.png", "/good-again.png")
HOWL = Character(character="Howl Jenkins Pendragon", movie="Howl's Moving Castle", aliases=["Wizard Howl"], limit=2)
KIKI = Character(character="Kiki", movie="Kiki's Delivery Service", limit=3)


class LoopbackSearch:
    """A search engine stand-in: each query yields a few distinct images on the test server."""

    name = "simple_image_download"

    def __init__(self, server: MisbehavingServer) -> None:
        self.server, self.queries = server, []

    async def search(self, query: str, limit: int, fetcher: Fetcher) -> list[str]:
        self.queries.append((query, limit))
        slug = "".join(char for char in query if char.isalnum())[:24]
        urls = []
        for number in range(4):
            path = f"/{slug}/{number}.png"
            self.server.routes[path] = image(png_bytes((len(self.queries) * 40 % 256, number * 50, 7)))
            urls.append(self.server.url(path))
        return urls[:limit]


def misbehaving_routes(server: MisbehavingServer) -> dict[str, str | None]:
    """Install one route per fault; return path → expected manifest reason prefix (None: stored)."""
    good = png_bytes((1, 2, 3))
    server.routes.update(
        {
            "/good.png": image(good),
            "/good-again.png": image(good),
            "/good.jpg": image(jpeg_bytes()),
            "/ratelimited.png": failing_then([(429, {"Retry-After": "0"})], png_bytes((9, 9, 9))),
            "/flaky.png": failing_then([(500, {})], png_bytes((8, 8, 8))),
            "/forbidden.png": failing_then([(403, {})] * 3, good),
            "/slow.png": slow(5.0, good),
            "/truncated.jpg": cut_short(jpeg_bytes((200, 10, 10), (300, 200)), keep_length_header=False),
            "/broken-transfer.jpg": cut_short(jpeg_bytes(), keep_length_header=True),
            "/html.jpg": image(b"<html><body>Access denied</body></html>" * 3, "image/jpeg"),
            "/50mb.jpg": endless(jpeg_bytes()[:32]),
            "/to-loopback.png": redirect(f"http://127.0.0.2:{server.port}/good.png"),
            "/to-metadata.png": redirect("http://169.254.169.254/latest/meta-data/iam/"),
            "/noai.png": image(png_bytes((4, 4, 4)), headers={"X-Robots-Tag": "noai"}),
            "/bomb.png": image(pixel_bomb_png()),
        }
    )
    return {
        "/good.png": None,
        "/good-again.png": "duplicate",  # of /good.png, or the other way round
        "/good.jpg": None,
        "/ratelimited.png": None,
        "/flaky.png": None,
        "/forbidden.png": "HTTP 403",
        "/slow.png": "timeout",
        "/truncated.jpg": "corrupt or truncated image",
        "/broken-transfer.jpg": "connection failed: RemoteProtocolError",
        "/html.jpg": "not an image: magic bytes match no image format (served as image/jpeg)",
        "/50mb.jpg": "too large: body exceeds the 1048576-byte cap",
        "/to-loopback.png": "ssrf: '127.0.0.2' resolves to 127.0.0.2 (loopback)",
        "/to-metadata.png": "ssrf: '169.254.169.254' resolves to 169.254.169.254 (link-local)",
        "/noai.png": "opted out: X-Robots-Tag noai",
        "/bomb.png": "image of 1500x1500 exceeds the 1000000 pixel cap",
        "/missing.png": "HTTP 404",
    }


def manifest_lines(store: ObjectStore, key: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in store.get_bytes(key).decode().splitlines()]


@pytest.mark.usefixtures("crawler_env")
def test_crawl_job_records_every_url_and_stores_good_images_once(
    any_store: ObjectStore, hosts: MisbehavingServer, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    search = LoopbackSearch(hosts)
    monkeypatch.setitem(sources.SOURCES, "simple_image_download", lambda: search)
    expected = misbehaving_routes(hosts)
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    dataset = DatasetRepository(any_store).create("ghibli", [HOWL, KIKI])
    params = {
        "dataset_id": dataset.id,
        "sources": ["simple_image_download"],
        "urls": [hosts.url(path) for path in expected],
    }
    job = JobRepository(any_store).create("crawl", params)

    finished = execute_job(job.id, any_store, settings)

    assert finished.state == JobState.succeeded, finished.error
    result = finished.result
    # one search per character name and alias, with the whole query (not word by word)
    assert [query for query, _ in search.queries] == [
        "Howl Jenkins Pendragon from Howl's Moving Castle Studio Ghibli",
        "Wizard Howl from Howl's Moving Castle Studio Ghibli",
        "Kiki from Kiki's Delivery Service Studio Ghibli",
    ]
    records = {line["url"]: line for line in manifest_lines(any_store, result["manifest"])}
    # Whichever twin is stored first is "ok", the other is its duplicate.
    twins = [records[hosts.url(path)] for path in TWINS]
    assert sorted(record["status"] for record in twins) == ["duplicate", "ok"], twins
    assert twins[0]["sha256"] == twins[1]["sha256"] and twins[0]["key"] == twins[1]["key"]
    for path, reason in expected.items():
        record = records[hosts.url(path)]
        if path in TWINS:
            continue
        if reason is None:
            assert record["status"] == "ok", record
            assert record["sha256"] and record["width"] and record["bytes"]
        else:
            assert record["status"] == "rejected", record
            assert record["reason"].startswith(reason), record
    # per-character limits: Howl (limit 2) and Kiki (limit 3) get exactly that many, balanced
    assert result["per_character"]["Howl Jenkins Pendragon"] == {"ok": 2, "unused": 2}
    assert result["per_character"]["Kiki"] == {"ok": 3, "unused": 1}
    raw = list(DatasetRepository(any_store).raw_images(dataset.id))
    assert len(raw) == 4 + 2 + 3
    assert len({image.sha256 for image in raw}) == len(raw)
    howl = [image for image in raw if image.character == "Howl Jenkins Pendragon"]
    assert {image.query for image in howl} == {query for query, _ in search.queries[:2]}
    assert all(image.movie == "Howl's Moving Castle" and image.source.startswith("http://") for image in howl)
    assert result["reasons"]["HTTP 403"] == 1 and result["downloaded"] == 9
    assert result["unused"] == 3  # search results left once each character had its limit
    assert finished.progress.step == finished.progress.total == len(records) + 3
    assert hosts.hits["/forbidden.png"] == 1 and hosts.hits["/ratelimited.png"] == 2

    # A redelivered job resumes: finished URLs are skipped, only transient failures are tried again.
    hits_before = dict(hosts.hits)
    rerun = JobRepository(any_store).get(job.id)
    rerun.state = JobState.queued
    JobRepository(any_store).save(rerun)
    again = execute_job(job.id, any_store, settings)
    assert again.state == JobState.succeeded, again.error
    retried = {path for path, hits in hosts.hits.items() if hits != hits_before.get(path)}
    assert retried == {"/slow.png", "/broken-transfer.jpg"}
    assert search.queries[3:] == []  # the saved plan is reused, not searched again
    assert DatasetRepository(any_store).count_raw_images(dataset.id) == len(raw)
    lines = manifest_lines(any_store, again.result["manifest"])
    assert len(lines) == len({line["url"] for line in lines}) == len(records)
    assert again.result["skipped"] == len(records) - 2 and again.result["unused"] == 3


@pytest.mark.usefixtures("crawler_env")
def test_crawl_job_fails_clearly_when_no_search_finds_anything(
    local_store: ObjectStore, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    class Empty:
        name = "bing"

        async def search(self, query: str, limit: int, fetcher: Fetcher) -> list[str]:
            return []

    monkeypatch.setitem(sources.SOURCES, "bing", Empty)
    dataset = DatasetRepository(local_store).create("ghibli", [KIKI])
    job = JobRepository(local_store).create("crawl", {"dataset_id": dataset.id, "sources": ["bing"]})
    finished = execute_job(job.id, local_store, Settings(_env_file=None, data_dir=tmp_path / "data"))
    assert finished.state == JobState.failed
    assert 'bing "Kiki from Kiki\'s Delivery Service Studio Ghibli": no image URLs found' in (finished.error or "")


def test_zip_import_attributes_images_to_the_character_folder_they_are_in(
    local_store: ObjectStore, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Kiki/a.png", png_bytes((10, 20, 30)))
        archive.writestr("wizard_howl/b.png", png_bytes((40, 50, 60)))  # an alias, folder-style spelling
        archive.writestr("loose.png", png_bytes((70, 80, 90)))
    archive_key, _ = local_store.put_content_addressed("uploads", buffer.getvalue(), "zip", "application/zip")
    dataset = DatasetRepository(local_store).create("ghibli", [KIKI, HOWL])
    job = JobRepository(local_store).create(
        "crawl", {"dataset_id": dataset.id, "search": False, "archive_key": archive_key}
    )

    finished = execute_job(job.id, local_store, Settings(_env_file=None, data_dir=tmp_path / "data"))

    assert finished.state == JobState.succeeded, finished.error
    attributed = {
        image.source.rsplit("/", 1)[-1]: (image.character, image.movie)
        for image in DatasetRepository(local_store).raw_images(dataset.id)
    }
    assert attributed == {
        "a.png": ("Kiki", "Kiki's Delivery Service"),
        "b.png": ("Howl Jenkins Pendragon", "Howl's Moving Castle"),
        "loose.png": (None, None),
    }
