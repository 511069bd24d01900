"""Generated pictures for the filter tests: textured scenes, their near-duplicate variants, odd formats."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont


def scene(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A sharp, textless picture: random shapes over a gradient, different for every seed."""
    rng = np.random.default_rng(seed)
    width, height = size
    ramp = np.linspace(0, 1, width)[None, :, None] * rng.integers(0, 256, 3) + np.linspace(0, 1, height)[
        :, None, None
    ] * rng.integers(0, 256, 3)
    image = Image.fromarray(np.clip(ramp / 2, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(20, width // 3)), int(rng.integers(20, height // 3))
        colour = tuple(int(value) for value in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x, y, x + w, y + h), fill=colour, outline=(0, 0, 0), width=2)
        else:
            draw.rectangle((x, y, x + w, y + h), fill=colour, outline=(0, 0, 0), width=2)
    return image


def encoded(image: Image.Image, image_format: str = "PNG", **save_options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **save_options)
    return buffer.getvalue()


def rescaled(image: Image.Image, factor: float = 0.6) -> Image.Image:
    return image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS)


def recompressed(image: Image.Image, quality: int = 30) -> Image.Image:
    return Image.open(io.BytesIO(encoded(image, "JPEG", quality=quality))).convert("RGB")


def cropped(image: Image.Image, fraction: float = 0.05) -> Image.Image:
    """Cut `fraction` of the width and height, split over both sides."""
    dx, dy = round(image.width * fraction / 2), round(image.height * fraction / 2)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


def colour_shifted(image: Image.Image, shift: tuple[int, int, int] = (12, -8, 6)) -> Image.Image:
    pixels = np.asarray(image).astype(np.int16) + np.array(shift, dtype=np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def blurred(image: Image.Image, sigma: float = 3.0) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(sigma))


def with_text(image: Image.Image, text: str = "FREE WALLPAPER DOWNLOAD") -> Image.Image:
    marked = image.copy()
    draw = ImageDraw.Draw(marked)
    font = ImageFont.load_default(size=40)
    draw.rectangle((20, marked.height - 90, marked.width - 20, marked.height - 20), fill=(255, 255, 255))
    draw.text((36, marked.height - 80), text, fill=(0, 0, 0), font=font)
    return marked
