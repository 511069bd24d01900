"""Small helpers shared by test modules (fixtures live in conftest.py files)."""

from __future__ import annotations

import io
import socket

import numpy as np
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
