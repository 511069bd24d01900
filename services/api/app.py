"""The gateway API: `uvicorn --factory services.api.app:create_app`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import Depends, FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api.routers import artifacts, datasets, health, jobs, loras, pipelines
from services.captioner import router as captions
from services.common.auth import RequireToken, TokenGuard
from services.common.http_input import (
    BodySizeLimitMiddleware,
    StrictJsonMiddleware,
    error_responses,
    http_error_response,
    validation_error_response,
)
from services.common.metrics import HttpMetricsMiddleware, QueueDepthCollector
from services.common.queue import CeleryJobQueue, EmbeddedJobQueue, JobQueue, QueueUnavailableError, make_queue
from services.common.registry import QUEUES
from services.common.requeue import LostJobSweeper
from services.common.settings import Settings
from services.common.storage import InvalidKeyError, ObjectNotFoundError, ObjectStore, make_store

log = logging.getLogger(__name__)


def _metrics_registry(settings: Settings) -> CollectorRegistry:
    """The process-wide metrics plus, with Redis, the queue depths (a per-app collector)."""
    metrics_registry = CollectorRegistry()
    metrics_registry.register(_ProcessMetrics())
    if settings.redis_url:
        metrics_registry.register(QueueDepthCollector(settings.redis_url, QUEUES))
    return metrics_registry


class _ProcessMetrics(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def create_app(
    settings: Settings | None = None, store: ObjectStore | None = None, queue: JobQueue | None = None
) -> FastAPI:
    settings = settings or Settings()
    store = store or make_store(settings)
    queue = queue or make_queue(store, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Uploads are decoded in worker threads, a few at a time: the event loop keeps answering, and
        # eight 64-Mpx pictures at once do not hold eight decoded copies in memory.
        app.state.decode_limiter = anyio.CapacityLimiter(settings.upload_decode_threads)
        sweeper = None
        if isinstance(queue, EmbeddedJobQueue):
            resumed = queue.resume_unfinished()
            if resumed:
                log.info("resumed %d unfinished embedded jobs", resumed)
        elif isinstance(queue, CeleryJobQueue):
            after_s = settings.requeue_after_seconds
            sweeper = LostJobSweeper(store, queue.has_message, queue.submit, after_s, after_s, min(60.0, after_s / 4))
            sweeper.start()
        yield
        if sweeper is not None:
            sweeper.stop()
        if isinstance(queue, EmbeddedJobQueue):
            queue.shutdown()

    app = FastAPI(
        title="ghibli-lora",
        version="0.1.0",
        summary="Crawl, filter, caption and train Studio Ghibli-style SD1.5 LoRAs.",
        lifespan=lifespan,
    )
    app.state.settings, app.state.store, app.state.queue = settings, store, queue
    app.state.known_datasets = set()  # datasets are never deleted, so a seen one stays valid
    app.add_middleware(StrictJsonMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_exception_handler(RequestValidationError, validation_error_response)
    app.add_exception_handler(StarletteHTTPException, http_error_response)
    app.add_middleware(HttpMetricsMiddleware)
    # Scrapers send the token as Prometheus does (`authorization: {credentials: ...}` in the scrape config).
    app.mount("/metrics", TokenGuard(make_asgi_app(registry=_metrics_registry(settings)), settings.api_token))

    app.include_router(health.router)
    app.mount("/ui", StaticFiles(directory=Path(__file__).parent / "static", html=True), name="ui")

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/")

    protected = [Depends(RequireToken(settings.api_token))]
    # Any protected route may answer these: the token, the body limit, the strict JSON check, unknown or
    # malformed keys (the exception handlers below); submissions also 503 when Redis is down.
    answers = error_responses(400, 401, 404, 413, 422)
    submissions = error_responses(400, 401, 404, 413, 422, 503)
    app.include_router(datasets.router, dependencies=protected, responses=answers)
    app.include_router(jobs.build_router(), dependencies=protected, responses=submissions)
    app.include_router(pipelines.router, dependencies=protected, responses=error_responses(409) | submissions)
    app.include_router(loras.router, dependencies=protected, responses=answers)
    app.include_router(artifacts.router, dependencies=protected, responses=answers)
    app.include_router(captions.router, dependencies=protected, responses=answers)

    @app.exception_handler(QueueUnavailableError)
    async def queue_unavailable(_: Request, error: QueueUnavailableError) -> JSONResponse:
        detail = f"{error}; the job was not queued, submit it again shortly"
        return JSONResponse({"detail": detail}, status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "10"})

    @app.exception_handler(InvalidKeyError)
    async def invalid_key(_: Request, error: InvalidKeyError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status.HTTP_400_BAD_REQUEST)

    @app.exception_handler(ObjectNotFoundError)
    async def not_found(_: Request, error: ObjectNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": f"not found: {error.args[0]}"}, status_code=status.HTTP_404_NOT_FOUND)

    return app
