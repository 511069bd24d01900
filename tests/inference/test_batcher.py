"""The batcher: compatible requests share a call; a request whose caller gave up is never rendered."""

from __future__ import annotations

from concurrent.futures import CancelledError

import pytest

from services.inference.batcher import Batcher
from services.inference.engine import Engine, ImageSpec, RenderSettings


def settings(steps: int) -> RenderSettings:
    return RenderSettings(steps=steps, guidance_scale=5.0, width=32, height=32, sampler="Euler")


def test_compatible_requests_are_rendered_in_one_call(engine: Engine) -> None:
    batcher = Batcher(engine, max_batch_images=4, window_s=0.05, max_queued=8)
    calls = engine.render_calls
    with engine._lock:  # hold the pipeline while the requests arrive
        futures = [batcher.submit(settings(2), [ImageSpec("a cat", "", seed)]) for seed in range(3)]
        other = batcher.submit(settings(3), [ImageSpec("a cat", "", 0)])
    assert [len(future.result(timeout=60)) for future in futures] == [1, 1, 1]
    assert len(other.result(timeout=60)) == 1
    assert engine.render_calls - calls == 2
    batcher.close()


def test_a_request_cancelled_before_its_batch_is_skipped_and_does_not_poison_the_next(engine: Engine) -> None:
    batcher = Batcher(engine, max_batch_images=4, window_s=0.0, max_queued=8)
    calls = engine.render_calls
    with engine._lock:
        running = batcher.submit(settings(1), [ImageSpec("a cat", "", 1)])
        while batcher.queued:  # the worker has taken the first request and waits for the pipeline
            pass
        abandoned = batcher.submit(settings(2), [ImageSpec("a dog", "", 2)])
        assert abandoned.cancel()  # what the API does when the caller's timeout expires
    assert len(running.result(timeout=60)) == 1
    follower = batcher.submit(settings(2), [ImageSpec("a dog", "", 2)])
    assert len(follower.result(timeout=60)) == 1
    with pytest.raises(CancelledError):
        abandoned.result()
    assert engine.render_calls - calls == 2
    batcher.close()
