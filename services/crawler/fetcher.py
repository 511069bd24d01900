"""The download stage: one URL in, the body bytes or a rejection reason out.

Every hop (the URL and each redirect target) passes the SSRF guard before a connection is
made. Bodies are streamed and cut off at the byte cap, image bodies are sniffed by their magic
bytes as soon as the first bytes arrive, and 429/5xx/rate-limit 403/timeouts/dropped
connections are retried with exponential backoff and jitter, honouring `Retry-After`.

robots.txt is not fetched: image URLs point at CDNs whose robots.txt speaks about crawling pages,
not hot-linking files (img2dataset makes the same call). The per-response opt-out that is
about AI use, `X-Robots-Tag: noai` / `noimageai`, is honoured.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import httpx

from services.common.images import sniff_image_type
from services.crawler.settings import CrawlerSettings
from services.crawler.ssrf import (
    GuardedNetworkBackend,
    Resolver,
    UnsafeURLError,
    check_url,
    parse_allow_list,
    resolve_host,
)

SNIFF_BYTES = 16
OPT_OUT_DIRECTIVES = {"noai", "noimageai"}


@dataclass(frozen=True)
class FetchResult:
    url: str
    final_url: str
    data: bytes | None
    http_status: int | None
    content_type: str | None
    reason: str | None  # why nothing usable came back; None on success
    retryable: bool  # the last failure was transient (a later crawl may try again)
    attempts: int

    @property
    def ok(self) -> bool:
        return self.data is not None


class _Rejected(Exception):
    def __init__(self, reason: str, http_status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.http_status, self.retry_after_s = reason, http_status, retry_after_s


class _Transient(_Rejected):
    """Worth another attempt after a backoff."""


class HostLimiter:
    """At most N requests in flight per host, and request starts spaced by a minimum delay."""

    def __init__(self, per_host: int, delay_s: float) -> None:
        self.per_host, self.delay_s = per_host, delay_s
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._next_start: dict[str, float] = {}

    async def acquire(self, host: str) -> asyncio.Semaphore:
        slot = self._slots.setdefault(host, asyncio.Semaphore(self.per_host))
        await slot.acquire()
        if self.delay_s:
            moment = time.monotonic()
            start = max(moment, self._next_start.get(host, 0.0))
            self._next_start[host] = start + self.delay_s
            if start > moment:
                await asyncio.sleep(start - moment)
        return slot


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _is_rate_limited_403(response: httpx.Response) -> bool:
    """Some hosts answer 403 instead of 429 when throttling; they say so in their headers."""
    return "retry-after" in response.headers or response.headers.get("x-ratelimit-remaining") == "0"


def _opted_out(response: httpx.Response) -> bool:
    directives = {
        part.strip().lower()
        for header in response.headers.get_list("x-robots-tag")
        for part in header.replace(";", ",").split(",")
    }
    # A directive may be scoped to a user agent ("otherbot: noai"); any scope counts as an opt-out here.
    return any(directive.rsplit(":", 1)[-1].strip() in OPT_OUT_DIRECTIVES for directive in directives)


# httpcore's pool scans every connection per request (quadratic in pool size); many small pools
# taken in turn keep that cheap: 64 connections in one pool ran 3.5x slower than in 8 pools of 8.
CONNECTIONS_PER_POOL = 8


def make_clients(settings: CrawlerSettings, backend: GuardedNetworkBackend) -> list[httpx.AsyncClient]:
    pools = -(-settings.concurrency // CONNECTIONS_PER_POOL)
    per_pool = -(-settings.concurrency // pools)
    return [_make_client(settings, per_pool, backend) for _ in range(pools)]


def _make_client(settings: CrawlerSettings, connections: int, backend: GuardedNetworkBackend) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    # httpx does not take a network backend; its pool does. Every connection then goes through
    # the SSRF guard at connect time (see ssrf.GuardedNetworkBackend).
    transport._pool._network_backend = backend  # type: ignore[attr-defined]
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=settings.read_timeout_s,
            write=settings.read_timeout_s,
            pool=settings.total_timeout_s,
        ),
        headers={"User-Agent": settings.user_agent},
        follow_redirects=False,  # every hop must pass the SSRF guard first
        trust_env=False,  # an environment proxy would bypass the guard's view of where requests go
    )


class Fetcher:
    """Downloads with limits; use as `async with Fetcher(settings) as fetcher`."""

    def __init__(
        self,
        settings: CrawlerSettings,
        resolver: Resolver = resolve_host,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.allow = parse_allow_list(settings.ssrf_allow)
        self.resolver = resolver
        self.clients = make_clients(settings, GuardedNetworkBackend(self.allow, resolver))
        self.next_client = itertools.cycle(self.clients)
        self.sleep = sleep
        self.hosts = HostLimiter(settings.per_host_concurrency, settings.per_host_delay_s)

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for client in self.clients:
            await client.aclose()

    async def fetch(self, url: str, expect_image: bool = True, headers: dict[str, str] | None = None) -> FetchResult:
        """Never raises for network or content faults: they come back as `reason`."""
        attempts = self.settings.retries + 1
        failure: _Rejected = _Transient("not attempted")
        for attempt in range(1, attempts + 1):
            try:
                final_url, response, data = await self._attempt_within_deadline(url, expect_image, headers or {})
            except _Transient as transient:
                failure = transient
                if attempt == attempts:
                    break
                wait = self._backoff(attempt, transient.retry_after_s)
                if wait is None:
                    failure = _Rejected(f"{transient.reason}; Retry-After exceeds {self.settings.backoff_max_s}s")
                    break
                await self.sleep(wait)
            except _Rejected as rejected:
                return FetchResult(url, url, None, rejected.http_status, None, rejected.reason, False, attempt)
            else:
                content_type = response.headers.get("content-type")
                return FetchResult(url, final_url, data, response.status_code, content_type, None, False, attempt)
        retryable = isinstance(failure, _Transient)
        reason = f"{failure.reason} (gave up after {attempt} attempts)" if retryable else failure.reason
        return FetchResult(url, url, None, failure.http_status, None, reason, retryable, attempt)

    async def _attempt_within_deadline(
        self, url: str, expect_image: bool, headers: dict[str, str]
    ) -> tuple[str, httpx.Response, bytes]:
        # The read timeout only bounds silences; a server dripping one byte a second needs a deadline.
        try:
            async with asyncio.timeout(self.settings.total_timeout_s):
                return await self._attempt(url, expect_image, headers)
        except TimeoutError:
            raise _Transient(f"timeout: no complete response within {self.settings.total_timeout_s}s") from None

    def _backoff(self, attempt: int, retry_after_s: float | None) -> float | None:
        """Seconds before the next attempt; None when the server asks for more than the cap."""
        if retry_after_s is not None:
            return retry_after_s if retry_after_s <= self.settings.backoff_max_s else None
        wait = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1))
        return wait * random.uniform(0.5, 1.5)

    async def _attempt(
        self, url: str, expect_image: bool, headers: dict[str, str]
    ) -> tuple[str, httpx.Response, bytes]:
        current = url
        for _ in range(self.settings.max_redirects + 1):
            try:
                await asyncio.to_thread(check_url, current, self.allow, self.resolver)
            except UnsafeURLError as unsafe:
                hop = "" if current == url else f" (redirected to {current})"
                raise _Rejected(f"ssrf: {unsafe}{hop}") from None
            slot = await self.hosts.acquire(urlsplit(current).netloc)
            try:
                async with next(self.next_client).stream("GET", current, headers=headers) as response:
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise _Rejected("redirect without Location", response.status_code)
                        current = urljoin(current, location)
                        continue
                    return current, response, await self._read_body(response, expect_image)
            except UnsafeURLError as unsafe:  # the name now resolves elsewhere than when checked
                raise _Rejected(f"ssrf at connect: {unsafe}") from None
            except httpx.TimeoutException as error:
                raise _Transient(f"timeout: {type(error).__name__}") from None
            except httpx.TransportError as error:
                raise _Transient(f"connection failed: {type(error).__name__}: {error}") from None
            finally:
                slot.release()
        raise _Rejected(f"more than {self.settings.max_redirects} redirects")

    async def _read_body(self, response: httpx.Response, expect_image: bool) -> bytes:
        status = response.status_code
        if status == 429 or status >= 500 or (status == 403 and _is_rate_limited_403(response)):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise _Transient(f"HTTP {status}", status, retry_after)
        if status != 200:
            raise _Rejected(f"HTTP {status}", status)
        if self.settings.respect_noai and _opted_out(response):
            raise _Rejected("opted out: X-Robots-Tag " + ", ".join(response.headers.get_list("x-robots-tag")), status)
        cap = self.settings.max_bytes
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise _Rejected(f"too large: Content-Length {declared} exceeds the {cap}-byte cap", status)
        content_type = response.headers.get("content-type", "(none)")
        body = bytearray()
        sniffed = not expect_image
        async for chunk in response.aiter_bytes(64 * 1024):
            body += chunk
            if len(body) > cap:
                raise _Rejected(f"too large: body exceeds the {cap}-byte cap", status)
            if not sniffed and len(body) >= SNIFF_BYTES:
                self._require_image(bytes(body[:SNIFF_BYTES]), content_type, status)
                sniffed = True
        if not sniffed:
            self._require_image(bytes(body), content_type, status)
        return bytes(body)

    @staticmethod
    def _require_image(head: bytes, content_type: str, status: int) -> None:
        if sniff_image_type(head) is None:
            raise _Rejected(f"not an image: magic bytes match no image format (served as {content_type})", status)
