"""Prometheus metrics shared by every service: job durations, images processed, queue depth.

The API and the inference service expose `/metrics`; a Celery worker serves its own registry on
`GHIBLI_METRICS_PORT` when that is set (see celery_app).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # Celery workers import this module and their images carry no starlette
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

JOB_DURATION = Histogram(
    "ghibli_job_duration_seconds",
    "Wall time of a job run, by type and final state.",
    ["type", "state"],
    buckets=(0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600),
)
IMAGES_PROCESSED = Counter(
    "ghibli_images_processed_total", "Images handled by a stage (rate() gives images/s).", ["stage"]
)
HTTP_DURATION = Histogram(
    "ghibli_http_request_duration_seconds",
    "HTTP request latency by route template and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
)


class QueueDepthCollector(Collector):
    """Tasks waiting in each Celery queue, read from Redis at scrape time."""

    def __init__(self, redis_url: str, queues: tuple[str, ...]) -> None:
        import redis

        self.redis = redis.Redis.from_url(redis_url, socket_timeout=2)
        self.queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        import redis

        gauge = GaugeMetricFamily("ghibli_queue_depth", "Tasks waiting in a Celery queue.", labels=["queue"])
        try:
            depths = [(queue, self.redis.llen(queue)) for queue in self.queues]
        except redis.RedisError:
            return  # an unreachable broker shows up in /readyz; the scrape itself must not fail
        for queue, depth in depths:
            gauge.add_metric([queue], depth)
        yield gauge


class HttpMetricsMiddleware:
    """Observe each request's latency under its route template (bounded label values)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500

        async def recording_send(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            HTTP_DURATION.labels(scope["method"], template, str(status_code)).observe(time.perf_counter() - started)
