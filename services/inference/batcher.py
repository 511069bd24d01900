"""Groups concurrent requests with equal render settings into one pipeline call.

Requests wait in a bounded queue (beyond it: QueueFullError, the API's 429). One worker thread
takes the oldest request plus every queued one it can share a call with (same RenderSettings, up
to `max_batch_images` images), waiting up to `window_s` for more to arrive when the batch is not
full. A request whose caller gave up (its future cancelled) before its batch started is dropped,
so a timeout never occupies the GPU or poisons the next call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from PIL import Image

from services.inference.engine import Engine, ImageSpec, RenderSettings

log = logging.getLogger(__name__)


class QueueFullError(RuntimeError):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"the generation queue is full; retry in about {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


@dataclass
class _Request:
    settings: RenderSettings
    specs: list[ImageSpec]
    future: Future[list[Image.Image]] = field(default_factory=Future)


class Batcher:
    def __init__(self, engine: Engine, max_batch_images: int, window_s: float, max_queued: int) -> None:
        self.engine = engine
        self.max_batch_images = max_batch_images
        self.window_s = window_s
        self.max_queued = max_queued
        self._queue: deque[_Request] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._seconds_per_image = 1.0  # running estimate, for Retry-After
        self._worker = threading.Thread(target=self._run, name="inference-batcher", daemon=True)
        self._worker.start()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def submit(self, settings: RenderSettings, specs: list[ImageSpec]) -> Future[list[Image.Image]]:
        """Queue the images; the future resolves to one image per spec, in order."""
        request = _Request(settings, specs)
        with self._ready:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            if len(self._queue) >= self.max_queued:
                queued_images = sum(len(queued.specs) for queued in self._queue)
                raise QueueFullError(max(1.0, queued_images * self._seconds_per_image))
            self._queue.append(request)
            self._ready.notify()
        return request.future

    def close(self) -> None:
        with self._ready:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._ready.notify()
        for request in pending:
            request.future.cancel()
        self._worker.join(timeout=60)

    def _compatible_images(self, settings: RenderSettings) -> int:
        return sum(len(request.specs) for request in self._queue if request.settings == settings)

    def _take_batch(self) -> list[_Request] | None:
        with self._ready:
            while not self._queue and not self._closed:
                self._ready.wait()
            if self._closed:
                return None
            settings = self._queue[0].settings
            deadline = time.monotonic() + self.window_s
            while (remaining := deadline - time.monotonic()) > 0 and (
                self._compatible_images(settings) < self.max_batch_images
            ):
                self._ready.wait(remaining)
            batch: list[_Request] = []
            images = 0
            for request in list(self._queue):
                if request.settings != settings:
                    continue
                if batch and images + len(request.specs) > self.max_batch_images:
                    break
                self._queue.remove(request)
                if request.future.set_running_or_notify_cancel():  # False: its caller gave up
                    batch.append(request)
                    images += len(request.specs)
            return batch

    def _run(self) -> None:
        while (batch := self._take_batch()) is not None:
            if not batch:
                continue
            specs = [spec for request in batch for spec in request.specs]
            started = time.perf_counter()
            try:
                images: list[Image.Image] = []
                for first in range(0, len(specs), self.max_batch_images):
                    images += self.engine.render(batch[0].settings, specs[first : first + self.max_batch_images])
            except Exception as error:
                log.exception("generation of %d images failed", len(specs))
                for request in batch:
                    request.future.set_exception(error)
                continue
            self._seconds_per_image = 0.8 * self._seconds_per_image + 0.2 * (time.perf_counter() - started) / len(specs)
            offset = 0
            for request in batch:
                request.future.set_result(images[offset : offset + len(request.specs)])
                offset += len(request.specs)
