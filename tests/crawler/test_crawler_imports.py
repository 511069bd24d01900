"""Zip and folder imports (zip-slip, zip bombs, symlinks), the search sources, and the `crawl` command."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import typer
from typer.testing import CliRunner

from services.crawler import cli, sources
from services.crawler.archives import ArchiveError, ArchiveLimits, iter_folder, iter_zip
from services.crawler.fetcher import Fetcher
from services.crawler.settings import CrawlerSettings
from services.crawler.sources import BingSource, SimpleImageDownloadSource, parse_url_list
from tests.crawler.hosts import MisbehavingServer, image, jpeg_bytes
from tests.support import png_bytes


def make_zip(path: Path, entries: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16) | 0
            archive.writestr(info, "/etc/passwd")
    return path


def test_zip_refuses_traversal_bombs_and_links_and_reads_the_rest(tmp_path: Path) -> None:
    good = png_bytes()
    archive = make_zip(
        tmp_path / "in.zip",
        {
            "chars/howl.png": good,
            "../evil.png": good,
            "nested/../../evil2.png": good,
            "/etc/cron.d/evil.png": good,
            "C:\\windows\\evil.png": good,
            "bomb.png": b"\0" * (5 * 1024 * 1024),
            "big.png": os.urandom(300 * 1024),
        },
        symlink="link.png",
    )
    limits = ArchiveLimits(max_entry_bytes=256 * 1024)
    outcome = {entry.name: entry.reason for entry in iter_zip(archive, limits)}
    assert outcome["chars/howl.png"] is None
    assert (
        outcome["../evil.png"]
        == outcome["nested/../../evil2.png"]
        == "unsafe path: climbs out of the archive (zip-slip)"
    )
    assert (
        outcome["/etc/cron.d/evil.png"]
        == outcome["C:\\windows\\evil.png"]
        == "unsafe path: absolute or Windows-style name"
    )
    assert outcome["bomb.png"].startswith("too large: declares 5242880 bytes")
    assert outcome["big.png"].startswith("too large")
    assert outcome["link.png"] == "symbolic link refused"
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["in.zip"]  # nothing was extracted


def test_zip_bomb_ratio_and_entry_count_are_bounded(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "bomb.zip", {"zeros.png": b"\0" * (3 * 1024 * 1024)})
    (entry,) = iter_zip(archive, ArchiveLimits(max_entry_bytes=10 * 1024 * 1024))
    assert entry.reason == "zip bomb refused: compression ratio above 200"
    many = make_zip(tmp_path / "many.zip", {f"{n}.png": b"x" for n in range(5)})
    with pytest.raises(ArchiveError, match="at most 3"):
        list(iter_zip(many, ArchiveLimits(max_entries=3)))
    (tmp_path / "not.zip").write_bytes(b"PK nope")
    with pytest.raises(ArchiveError, match="not a readable zip"):
        list(iter_zip(tmp_path / "not.zip"))


def test_folder_import_skips_symlinks_and_non_images(tmp_path: Path) -> None:
    root = tmp_path / "pics"
    (root / "kiki").mkdir(parents=True)
    (root / "kiki" / "a.png").write_bytes(png_bytes())
    (root / "notes.txt").write_text("hello")
    outside = tmp_path / "secret.png"
    outside.write_bytes(png_bytes((1, 1, 1)))
    (root / "link.png").symlink_to(outside)
    outcome = {entry.name: entry.reason for entry in iter_folder(root)}
    assert outcome == {"kiki/a.png": None, "link.png": "symbolic link refused"}


def test_url_lists_in_txt_and_csv() -> None:
    text = "# comment\nhttps://a.example/1.jpg\n\nhttps://a.example/2.jpg\n"
    assert [item.url for item in parse_url_list(text)] == ["https://a.example/1.jpg", "https://a.example/2.jpg"]
    table = "url,character,movie\nhttps://a.example/1.jpg,Kiki,Kiki's Delivery Service\nhttps://a.example/2.jpg,,\n"
    rows = list(parse_url_list(table))
    assert (rows[0].character, rows[0].movie, rows[1].character) == ("Kiki", "Kiki's Delivery Service", None)


SEARCH_PAGE = (
    b'<html><script>AF_initDataCallback({data:[["https://cdn.example/howl-1.jpg",600,400],'
    b'["https://www.example/page.html"],["https://cdn.example/howl-2.png?w=1\\u003d2",1,1],'
    b'["https://cdn.example/howl-1.jpg",600,400]]});</script></html>'
)


def search(source: object, query: str, settings: CrawlerSettings, limit: int = 10) -> list[str]:
    import asyncio

    async def go() -> list[str]:
        async with Fetcher(settings) as fetcher:
            return await source.search(query, limit, fetcher)  # type: ignore[attr-defined]

    return asyncio.run(go())


def test_simple_image_download_searches_the_whole_query_once(
    hosts: MisbehavingServer, crawler_settings: CrawlerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simple_image_download import simple_image_download as library

    hosts.routes["/search"] = image(SEARCH_PAGE, "text/html")
    monkeypatch.setattr(library, "BASE_URL", hosts.url("/search?q="))
    query = "Howl Jenkins Pendragon from Howl's Moving Castle Studio Ghibli"
    found = search(SimpleImageDownloadSource(), query, crawler_settings)
    assert found == ["https://cdn.example/howl-1.jpg", "https://cdn.example/howl-2.png?w=1"]
    (request,) = hosts.requests  # one search, not one per word; no image was downloaded by the library
    assert parse_qs(urlsplit(request).query)["q"] == [query]
    assert search(SimpleImageDownloadSource(), query, crawler_settings, limit=1) == ["https://cdn.example/howl-1.jpg"]


def test_bing_source_pages_until_no_new_results(
    hosts: MisbehavingServer, crawler_settings: CrawlerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiles = "".join(
        f'<div class="imgpt"><a class="iusc" m=\'{{"murl":"https://cdn.example/kiki-{n}.jpg"}}\'></a></div>'
        for n in range(3)
    )
    hosts.routes["/images/async"] = image(f"<html><body>{tiles}</body></html>".encode(), "text/html")
    monkeypatch.setattr(BingSource, "base_url", hosts.url("/images/async"))
    found = search(BingSource(), "Kiki from Kiki's Delivery Service Studio Ghibli", crawler_settings)
    assert found == [f"https://cdn.example/kiki-{n}.jpg" for n in range(3)]
    assert hosts.hits["/images/async"] == 2  # the second page repeated the first: stop


def test_blocked_search_page_is_a_clear_search_error(
    hosts: MisbehavingServer, crawler_settings: CrawlerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BingSource, "base_url", hosts.url("/nothing-here"))
    with pytest.raises(sources.SearchError, match="HTTP 404"):
        search(BingSource(), "Kiki", crawler_settings)


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    cli.register(app)
    app.command("noop")(lambda: None)  # typer runs a lone command without its name
    return app


@pytest.mark.usefixtures("crawler_env")
def test_crawl_command_locally_into_a_folder_and_resumes(
    app: typer.Typer, hosts: MisbehavingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts.routes.update(
        {"/a.png": image(png_bytes()), "/b.jpg": image(jpeg_bytes()), "/c.png": image(png_bytes((0, 9, 0)))}
    )

    class Search:
        name = "bing"

        async def search(self, query: str, limit: int, fetcher: Fetcher) -> list[str]:
            return [hosts.url("/b.jpg")]

    monkeypatch.setitem(sources.SOURCES, "bing", Search)
    urls = tmp_path / "urls.csv"
    urls.write_text(
        f"url,character,movie\n{hosts.url('/a.png')},Kiki,Kiki's Delivery Service\n{hosts.url('/c.png')},,\n"
    )
    # the zip is read after the downloads: its copy of a.png is the duplicate
    archive = make_zip(
        tmp_path / "more.zip", {"copy-of-a.png": png_bytes(), "x.png": png_bytes((5, 5, 5)), "../y.png": png_bytes()}
    )
    characters = tmp_path / "characters.yaml"
    characters.write_text("characters:\n  - {character: Jiji, movie: Kiki's Delivery Service, limit: 1}\n")
    out = tmp_path / "out"
    arguments = ["crawl", "--characters", str(characters), "--source", "bing", "--urls", str(urls)]
    arguments += ["--zip", str(archive), "--out", str(out)]

    first = CliRunner().invoke(app, arguments)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout[first.stdout.index("{") :])
    assert (summary["downloaded"], summary["duplicates"], summary["rejected"]) == (4, 1, 1)
    assert sorted(path.parent.name for path in out.glob("*/*.*")) == ["Jiji", "Kiki", "unsorted", "unsorted"]
    second = CliRunner().invoke(app, arguments)
    summary = json.loads(second.stdout[second.stdout.index("{") :])
    assert (summary["downloaded"], summary["skipped"]) == (0, 6)
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 6


def test_crawl_command_rejects_bad_input_clearly(app: typer.Typer, tmp_path: Path) -> None:
    nothing = CliRunner().invoke(app, ["crawl"])
    assert nothing.exit_code == 2 and "nothing to do" in nothing.output
    (tmp_path / "bad.yaml").write_text("- {character: Kiki}\n")
    bad = CliRunner().invoke(app, ["crawl", "--characters", str(tmp_path / "bad.yaml")])
    assert bad.exit_code == 2 and "invalid characters file" in bad.output and "movie" in bad.output
