"""Safe decoding and normalisation: any accepted file becomes an upright RGB picture of a fixed size."""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps

from services.filter.params import NormaliseMode

EXIF_ORIENTATION = 0x0112
ROTATING_ORIENTATIONS = {5, 6, 7, 8}  # transposed or turned by 90°: width and height swap


SHRINK_NEEDS_AREA = 1.5


class DecodeError(ValueError):
    """The bytes cannot be turned into a picture; `reason` is the report's drop reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Decoded:
    image: Image.Image  # upright RGB; smaller than the file when decoded at a reduced DCT scale
    full_size: tuple[int, int]  # upright width and height of the picture at full resolution


def decode(
    data: bytes, max_pixels: int, background: tuple[int, int, int] = (255, 255, 255), shrink_to: int | None = None
) -> Decoded:
    """Decode to an upright RGB image: first frame, EXIF orientation applied, alpha on `background`.

    With `shrink_to`, a JPEG whose shorter side is at least twice that is decoded at 1/2, 1/4 or
    1/8 scale in the DCT domain (libjpeg's scaled IDCT), never below `shrink_to`: far less work
    than decoding every pixel and throwing most of them away in a resize.
    Raises DecodeError("too_large" | "undecodable", detail) instead of crashing or allocating a bomb.
    """
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its own cap; our cap is checked before loading.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise DecodeError("too_large", f"{width}x{height} exceeds the {max_pixels}-pixel cap")
            image.seek(0)  # animated GIF/WebP/APNG: the first frame
            if shrink_to and image.format == "JPEG" and min(width, height) >= 2 * shrink_to:
                factor = shrink_to / min(width, height)
                image.draft(image.mode, (math.ceil(width * factor), math.ceil(height * factor)))
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            if orientation in ROTATING_ORIENTATIONS:
                width, height = height, width
            image.load()
            # exif_transpose copies even an upright picture: a whole frame's copy for nothing.
            upright = image if orientation == 1 else ImageOps.exif_transpose(image)
    except DecodeError:
        raise
    except Image.DecompressionBombError as error:
        raise DecodeError("too_large", str(error)) from None
    except Exception as error:  # Pillow raises many types for corrupt input (OSError, SyntaxError, ValueError …)
        raise DecodeError("undecodable", f"{type(error).__name__}: {error}") from None
    return Decoded(to_rgb(upright, background), (width, height))


def decode_image(data: bytes, max_pixels: int, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """`decode` at full resolution, as a plain image."""
    return decode(data, max_pixels, background).image


def to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any mode (CMYK, P, LA, I;16, RGBA …) to RGB, compositing transparency over `background`."""
    if image.mode.startswith("I;16"):
        image = image.point(lambda value: value / 256).convert("L")  # 16-bit grey to 8 bits, not clipped
    elif image.mode in ("I", "F"):
        image = _stretch_to_grey(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")  # convert() copies even RGB


def _stretch_to_grey(image: Image.Image) -> Image.Image:
    """32-bit integer or float grey has no fixed range: map its own extremes to 0..255."""
    low, high = image.getextrema()
    span = max(1e-9, float(high) - float(low))
    return image.point(lambda value: (value - low) * (255 / span)).convert("L")


def normalise(image: Image.Image, size: int, mode: NormaliseMode, background: tuple[int, int, int]) -> Image.Image:
    """A `size`×`size` RGB image: centre crop to square, pad (letterbox) or stretch."""
    return Image.fromarray(normalise_pixels(np.asarray(image.convert("RGB")), size, mode, background))


def normalise_pixels(
    pixels: np.ndarray, size: int, mode: NormaliseMode, background: tuple[int, int, int]
) -> np.ndarray:
    """`normalise` on an RGB array (height × width × 3, uint8)."""
    height, width = pixels.shape[:2]
    if mode == "center-crop":
        side = min(width, height)
        top, left = (height - side) // 2, (width - side) // 2
        return resize_pixels(pixels[top : top + side, left : left + side], size, size)
    if mode == "pad":
        scale = size / max(width, height)
        inner_width, inner_height = max(1, round(width * scale)), max(1, round(height * scale))
        canvas = np.empty((size, size, 3), dtype=np.uint8)
        canvas[:] = background
        top, left = (size - inner_height) // 2, (size - inner_width) // 2
        canvas[top : top + inner_height, left : left + inner_width] = resize_pixels(pixels, inner_width, inner_height)
        return canvas
    return resize_pixels(pixels, size, size)


def resize_pixels(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """OpenCV resize with the filter that suits the scale (an order of magnitude faster than Pillow's)."""
    shrink = max(pixels.shape[1] / width, pixels.shape[0] / height)
    if shrink == 1 and pixels.shape[:2] == (height, width):
        return np.ascontiguousarray(pixels)
    if shrink >= SHRINK_NEEDS_AREA:
        interpolation = cv2.INTER_AREA  # averages every source pixel: no aliasing from large reductions
    elif shrink > 1:
        interpolation = cv2.INTER_LINEAR  # near 1:1 (DCT-scaled JPEGs land here): area's cost buys nothing
    else:
        interpolation = cv2.INTER_CUBIC
    return cv2.resize(pixels, (width, height), interpolation=interpolation)


def encode(image: Image.Image, output_format: str, jpeg_quality: int) -> tuple[bytes, str, str]:
    """(bytes, extension, MIME type); deterministic, so the same picture has the same sha256."""
    buffer = io.BytesIO()
    if output_format == "png":
        image.save(buffer, format="PNG", optimize=False)
        return buffer.getvalue(), "png", "image/png"
    image.save(buffer, format="JPEG", quality=jpeg_quality, subsampling=0 if jpeg_quality >= 90 else 2)
    return buffer.getvalue(), "jpg", "image/jpeg"
