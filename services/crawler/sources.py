"""Where candidate image URLs come from: search engines, URL lists.

A search `Source` turns a query into image URLs; the downloads are ours (fetcher.py), so every
source gets the same limits, retries and SSRF guard. Search pages are fetched through the same
`Fetcher`, which is what lets tests point a source at a loopback server.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, urlsplit

from services.crawler.fetcher import Fetcher

SEARCH_SUFFIX = "Studio Ghibli"


class SearchError(RuntimeError):
    """The search could not run (blocked, unreachable); the message says why."""


class Source(Protocol):
    name: str

    async def search(self, query: str, limit: int, fetcher: Fetcher) -> list[str]:
        """Up to `limit` image URLs for the query; [] when the engine found nothing."""
        ...


def build_query(name: str, movie: str) -> str:
    """`Howl Jenkins Pendragon from Howl's Moving Castle Studio Ghibli`."""
    return f"{name} from {movie} {SEARCH_SUFFIX}"


async def _fetch_page(fetcher: Fetcher, url: str, headers: dict[str, str] | None = None) -> bytes:
    page = await fetcher.fetch(url, expect_image=False, headers=headers)
    if page.data is None:
        raise SearchError(f"search page {url} failed: {page.reason}")
    return page.data


_SCAN_LOCK = threading.Lock()


class SimpleImageDownloadSource:
    """Google Images through `simple_image_download` 0.5: its search URL and its link scanner.

    The library would split the query into words and search each word; we build the search URL
    for the whole query. Its scanner keeps its position in a module global and downloads every
    link it finds; we scan under a lock, with its per-link download swapped for a no-op, and
    do the downloads ourselves.
    """

    name = "simple_image_download"
    extensions = (".jpg", ".jpeg", ".png", ".gif", ".webp")

    async def search(self, query: str, limit: int, fetcher: Fetcher) -> list[str]:
        from simple_image_download import simple_image_download as library

        search_url = library.generate_urls([query])[0]
        page = await _fetch_page(fetcher, search_url, library.HEADERS)
        # The library scans str(bytes) of the page (its `_download_page`), escapes included.
        return self.scan_links(str(page), limit)

    @classmethod
    def scan_links(cls, page_text: str, limit: int) -> list[str]:
        from simple_image_download import simple_image_download as library

        links: dict[str, None] = {}
        with _SCAN_LOCK:
            download_link = library.check_webpage
            library.check_webpage = _keep_link
            library.SCANNER_COUNTER = -1
            try:
                position = -1
                while len(links) < limit:
                    link = library.scan_webpage(page_text, cls.extensions, 1000)
                    # Past the last link the scanner wraps around to the page start: stop there.
                    if link is None or position >= library.SCANNER_COUNTER:
                        break
                    position = library.SCANNER_COUNTER
                    if link.startswith("https://") and urlsplit(link).hostname:
                        links[link] = None
            finally:
                library.check_webpage = download_link
        return list(links)


def _keep_link(url: str) -> str:
    return url


class BingSource:
    """Bing Images through `icrawler`'s Bing page parser (the async results endpoint)."""

    name = "bing"
    base_url = "https://www.bing.com/images/async"
    page_size = 35
    max_pages = 10

    async def search(self, query: str, limit: int, fetcher: Fetcher) -> list[str]:
        from icrawler.builtin.bing import BingParser

        parser = BingParser(thread_num=1, signal=None, session=None)
        links: dict[str, None] = {}
        for page_number in range(self.max_pages):
            url = f"{self.base_url}?q={quote(query)}&first={page_number * self.page_size}"
            page = _PageResponse(await _fetch_page(fetcher, url))
            found = [item["file_url"] for item in parser.parse(page)]
            fresh = [link for link in found if link not in links]
            links.update(dict.fromkeys(fresh))
            if not fresh or len(links) >= limit:
                break
        return list(links)[:limit]


@dataclass(frozen=True)
class _PageResponse:
    """What icrawler's parsers read from a requests.Response."""

    content: bytes


SOURCES: dict[str, type[Source]] = {source.name: source for source in (SimpleImageDownloadSource, BingSource)}


@dataclass(frozen=True)
class ListedURL:
    url: str
    character: str | None = None
    movie: str | None = None
    query: str | None = None


def parse_url_list(text: str) -> Iterator[ListedURL]:
    """A .txt list (one URL a line, `#` comments) or a CSV with a `url` column (+ character, movie, query)."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return
    header = [cell.strip().lower() for cell in next(csv.reader([lines[0]]))]
    if "url" in header:
        for row in csv.DictReader(io.StringIO("\n".join(lines)), fieldnames=header):
            url = (row.get("url") or "").strip()
            if url and url.lower() != "url":
                yield ListedURL(url, _cell(row, "character"), _cell(row, "movie"), _cell(row, "query"))
        return
    for line in lines:
        yield ListedURL(line.strip())


def _cell(row: dict[str, str | None], name: str) -> str | None:
    value = (row.get(name) or "").strip()
    return value or None
