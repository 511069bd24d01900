"""The download stage against hosts that misbehave: each fault is retried or rejected with its reason."""

from __future__ import annotations

import asyncio

import pytest

from services.crawler.fetcher import Fetcher, FetchResult, parse_retry_after
from services.crawler.settings import CrawlerSettings
from tests.crawler.hosts import MisbehavingServer, cut_short, endless, failing_then, image, jpeg_bytes, redirect, slow
from tests.support import png_bytes


def fetch(settings: CrawlerSettings, url: str, sleeps: list[float] | None = None) -> FetchResult:
    async def recorded_sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    async def go() -> FetchResult:
        async with Fetcher(settings, sleep=recorded_sleep) as fetcher:
            return await fetcher.fetch(url)

    return asyncio.run(go())


def test_good_image_comes_back_whole(hosts: MisbehavingServer, crawler_settings: CrawlerSettings) -> None:
    data = png_bytes()
    hosts.routes["/a.png"] = image(data)
    result = fetch(crawler_settings, hosts.url("/a.png"))
    assert (result.data, result.reason, result.attempts, result.http_status) == (data, None, 1, 200)


def test_429_retry_after_is_honoured(hosts: MisbehavingServer, crawler_settings: CrawlerSettings) -> None:
    hosts.routes["/busy.png"] = failing_then([(429, {"Retry-After": "1"})], png_bytes())
    sleeps: list[float] = []
    result = fetch(crawler_settings, hosts.url("/busy.png"), sleeps)
    assert result.ok and result.attempts == 2
    assert sleeps == [1.0]


def test_retry_after_beyond_the_cap_gives_up(hosts: MisbehavingServer, crawler_settings: CrawlerSettings) -> None:
    hosts.routes["/later.png"] = failing_then([(429, {"Retry-After": "3600"})], png_bytes())
    result = fetch(crawler_settings, hosts.url("/later.png"))
    assert not result.ok and "Retry-After exceeds" in (result.reason or "")
    assert hosts.hits["/later.png"] == 1


def test_500_then_success_backs_off_with_jitter(hosts: MisbehavingServer, crawler_settings: CrawlerSettings) -> None:
    settings = crawler_settings.model_copy(update={"retries": 3, "backoff_base_s": 1.0, "backoff_max_s": 10.0})
    hosts.routes["/flaky.png"] = failing_then([(500, {}), (503, {}), (502, {})], png_bytes())
    sleeps: list[float] = []
    result = fetch(settings, hosts.url("/flaky.png"), sleeps)
    assert result.ok and result.attempts == 4
    # exponential: about 1, 2, 4 seconds, each scaled by a jitter in [0.5, 1.5)
    for wait, base in zip(sleeps, (1.0, 2.0, 4.0), strict=True):
        assert 0.5 * base <= wait < 1.5 * base


def test_persistent_5xx_is_rejected_as_retryable(hosts: MisbehavingServer, crawler_settings: CrawlerSettings) -> None:
    hosts.routes["/down.png"] = failing_then([(503, {})] * 5, png_bytes())
    result = fetch(crawler_settings, hosts.url("/down.png"))
    assert not result.ok and result.retryable
    assert result.reason == "HTTP 503 (gave up after 2 attempts)"


def test_plain_403_is_not_retried_but_rate_limit_403_is(
    hosts: MisbehavingServer, crawler_settings: CrawlerSettings
) -> None:
    hosts.routes["/forbidden.png"] = failing_then([(403, {})], png_bytes())
    hosts.routes["/throttled.png"] = failing_then([(403, {"X-RateLimit-Remaining": "0"})], png_bytes())
    forbidden = fetch(crawler_settings, hosts.url("/forbidden.png"))
    throttled = fetch(crawler_settings, hosts.url("/throttled.png"))
    assert (forbidden.reason, forbidden.retryable, hosts.hits["/forbidden.png"]) == ("HTTP 403", False, 1)
    assert throttled.ok and throttled.attempts == 2


def test_slow_response_times_out(hosts: MisbehavingServer, crawler_settings: CrawlerSettings) -> None:
    hosts.routes["/slow.png"] = slow(5.0, png_bytes())
    result = fetch(crawler_settings.model_copy(update={"retries": 0}), hosts.url("/slow.png"))
    assert not result.ok and result.retryable and "timeout" in (result.reason or "")


def test_declared_and_streamed_oversize_bodies_are_cut_off(
    hosts: MisbehavingServer, crawler_settings: CrawlerSettings
) -> None:
    hosts.routes["/declared.jpg"] = lambda handler, hits: handler.send_response(200) or _declare_huge(handler)
    hosts.routes["/endless.jpg"] = endless(jpeg_bytes()[:64])
    declared = fetch(crawler_settings, hosts.url("/declared.jpg"))
    streamed = fetch(crawler_settings, hosts.url("/endless.jpg"))
    assert declared.reason == f"too large: Content-Length 52428800 exceeds the {1024 * 1024}-byte cap"
    assert streamed.reason == f"too large: body exceeds the {1024 * 1024}-byte cap"


def _declare_huge(handler) -> None:  # type: ignore[no-untyped-def]
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Length", str(50 * 1024 * 1024))
    handler.end_headers()
    handler.wfile.write(jpeg_bytes())


def test_html_served_as_jpeg_is_refused_by_magic_bytes(
    hosts: MisbehavingServer, crawler_settings: CrawlerSettings
) -> None:
    hosts.routes["/fake.jpg"] = image(b"<!doctype html><html><body>hotlinking denied</body></html>", "image/jpeg")
    result = fetch(crawler_settings, hosts.url("/fake.jpg"))
    assert result.reason == "not an image: magic bytes match no image format (served as image/jpeg)"


def test_image_served_with_a_wrong_type_is_accepted(
    hosts: MisbehavingServer, crawler_settings: CrawlerSettings
) -> None:
    hosts.routes["/odd"] = image(png_bytes(), "text/html")
    assert fetch(crawler_settings, hosts.url("/odd")).ok


def test_broken_transfer_is_retried_then_rejected(hosts: MisbehavingServer, crawler_settings: CrawlerSettings) -> None:
    hosts.routes["/cut.jpg"] = cut_short(jpeg_bytes(), keep_length_header=True)
    result = fetch(crawler_settings, hosts.url("/cut.jpg"))
    assert not result.ok and result.retryable and hosts.hits["/cut.jpg"] == 2
    assert (result.reason or "").startswith("connection failed: RemoteProtocolError")


def test_noai_opt_out_is_respected(hosts: MisbehavingServer, crawler_settings: CrawlerSettings) -> None:
    hosts.routes["/mine.png"] = image(png_bytes(), headers={"X-Robots-Tag": "noindex, noimageai"})
    result = fetch(crawler_settings, hosts.url("/mine.png"))
    assert result.reason == "opted out: X-Robots-Tag noindex, noimageai"
    allowed = fetch(crawler_settings.model_copy(update={"respect_noai": False}), hosts.url("/mine.png"))
    assert allowed.ok


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{port}/a.png",
        "http://[::1]:{port}/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
    ],
)
def test_redirect_to_a_private_address_is_refused(
    hosts: MisbehavingServer, crawler_settings: CrawlerSettings, target: str
) -> None:
    hosts.routes["/a.png"] = image(png_bytes())
    hosts.routes["/hop"] = redirect(target.format(port=hosts.port))
    result = fetch(crawler_settings, hosts.url("/hop"))
    assert not result.ok and not result.retryable
    assert (result.reason or "").startswith("ssrf: ") and "redirected to" in (result.reason or "")
    assert hosts.hits["/a.png"] == 0


def test_loopback_is_refused_without_the_allow_list(hosts: MisbehavingServer) -> None:
    hosts.routes["/a.png"] = image(png_bytes())
    result = fetch(CrawlerSettings(_env_file=None), hosts.url("/a.png"))
    assert result.reason and result.reason.startswith("ssrf: '127.0.0.1' resolves to 127.0.0.1 (loopback)")
    assert hosts.hits["/a.png"] == 0


def test_redirect_chain_is_followed_and_bounded(hosts: MisbehavingServer, crawler_settings: CrawlerSettings) -> None:
    hosts.routes["/a.png"] = image(png_bytes())
    hosts.routes["/one"] = redirect("/a.png")
    hosts.routes["/loop"] = redirect("/loop")
    followed = fetch(crawler_settings, hosts.url("/one"))
    looped = fetch(crawler_settings, hosts.url("/loop"))
    assert followed.ok and followed.final_url == hosts.url("/a.png")
    assert looped.reason == "more than 5 redirects"


def test_per_host_limit_bounds_concurrent_requests(hosts: MisbehavingServer, crawler_settings: CrawlerSettings) -> None:
    import threading

    active, peak, lock = [0], [0], threading.Lock()

    def counting(handler, hits: int) -> None:  # type: ignore[no-untyped-def]
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        slow(0.05, png_bytes())(handler, hits)
        with lock:
            active[0] -= 1

    hosts.routes["/c.png"] = counting
    settings = crawler_settings.model_copy(update={"per_host_concurrency": 2, "concurrency": 16})

    async def go() -> list[FetchResult]:
        async with Fetcher(settings) as fetcher:
            return await asyncio.gather(*(fetcher.fetch(hosts.url(f"/c.png?{n}")) for n in range(10)))

    assert all(result.ok for result in asyncio.run(go()))
    assert peak[0] == 2


@pytest.mark.parametrize(
    ("header", "seconds"), [("120", 120.0), (None, None), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)]
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_a_name_that_rebinds_to_loopback_after_the_check_is_refused_at_connect(
    hosts: MisbehavingServer, crawler_settings: CrawlerSettings
) -> None:
    hosts.routes["/a.png"] = image(png_bytes())
    answers = iter([["93.184.216.34"]])  # the check sees a public address; later lookups see loopback

    def rebinding_resolver(host: str, port: int) -> list[str]:
        return next(answers, ["127.0.0.1"])

    settings = crawler_settings.model_copy(update={"ssrf_allow": [], "retries": 0})

    async def go() -> FetchResult:
        async with Fetcher(settings, resolver=rebinding_resolver) as fetcher:
            return await fetcher.fetch(f"http://rebind.test:{hosts.port}/a.png")

    result = asyncio.run(go())
    assert result.data is None and (result.reason or "").startswith("ssrf at connect"), result.reason
    assert "127.0.0.1" in (result.reason or "") and not hosts.requests
