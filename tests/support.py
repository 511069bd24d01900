"""Small helpers shared by test modules (fixtures live in conftest.py files)."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import uvicorn
from PIL import Image


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def png_bytes(color: tuple[int, int, int] = (200, 80, 40), size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def distinct_images(count: int) -> list[bytes]:
    """Noise images: sharp, textless and far apart in perceptual hash, so the filter keeps them all."""
    generator = np.random.default_rng(7)
    images = []
    for _ in range(count):
        pixels = generator.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).resize((600, 600), Image.Resampling.NEAREST)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images


@contextmanager
def serve_in_thread(app: Any) -> Iterator[int]:
    """Run an ASGI app under uvicorn on a free loopback port for the block; yields the port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)
