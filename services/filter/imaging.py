"""Safe decoding and normalisation: any accepted file becomes an upright RGB picture of a fixed size."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg
from PIL import Image

from services.filter.params import NormaliseMode

EXIF_ORIENTATION = 0x0112
# What each EXIF orientation asks to display the picture upright (as ImageOps.exif_transpose does).
EXIF_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
ROTATING_ORIENTATIONS = {5, 6, 7, 8}  # transposed or turned by 90°: width and height swap
SHRINK_NEEDS_AREA = 1.5


class DecodeError(ValueError):
    """The bytes cannot be turned into a picture; `reason` is the report's drop reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Decoded:
    pixels: np.ndarray  # upright RGB, height × width × 3 uint8; smaller than the file at a reduced DCT scale
    full_size: tuple[int, int]  # upright width and height of the picture at full resolution


def decode(
    data: bytes, max_pixels: int, background: tuple[int, int, int] = (255, 255, 255), shrink_to: int | None = None
) -> Decoded:
    """Decode to upright RGB pixels: first frame, EXIF orientation applied, alpha on `background`.

    With `shrink_to`, a YCbCr or grey JPEG whose shorter side is at least twice that is decoded at 1/2 … 1/8
    scale in the DCT domain (libjpeg's scaled IDCT), never below `shrink_to`: far less work than
    decoding every pixel and throwing most of them away in a resize.
    Raises DecodeError("too_large" | "undecodable", detail) instead of crashing or allocating a bomb.
    """
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its own cap; our cap is checked before loading.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
            width, height = image.size
            if width * height > max_pixels:
                raise DecodeError("too_large", f"{width}x{height} exceeds the {max_pixels}-pixel cap")
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            plain_jpeg = image.format in ("JPEG", "MPO") and image.mode in ("RGB", "L")  # MPO: a camera's JPEG
            pixels = _decode_plain_jpeg(data, shrink_to) if plain_jpeg else None
            if pixels is None:
                image.seek(0)  # animated GIF/WebP/APNG: the first frame
                image.load()
                pixels = np.asarray(to_rgb(image, background))
            if orientation in EXIF_TRANSPOSES:
                pixels = np.asarray(Image.fromarray(pixels).transpose(EXIF_TRANSPOSES[orientation]))
                if orientation in ROTATING_ORIENTATIONS:
                    width, height = height, width
    except DecodeError:
        raise
    except Image.DecompressionBombError as error:
        raise DecodeError("too_large", str(error)) from None
    except Exception as error:  # Pillow raises many types for corrupt input (OSError, SyntaxError, ValueError …)
        raise DecodeError("undecodable", f"{type(error).__name__}: {error}") from None
    return Decoded(pixels, (width, height))


def _decode_plain_jpeg(data: bytes, shrink_to: int | None) -> np.ndarray | None:
    """A YCbCr or grey JPEG straight into RGB pixels with libjpeg-turbo, or None to leave it to Pillow.

    About twice as fast as Pillow's decode plus its RGBX → RGB copy. Only scales of 1/2 or less
    (min_factor 2): at 5/8–7/8 libjpeg-turbo took longer than decoding the whole picture.
    Anything libjpeg calls an error, even a recoverable one (a few stray bytes, which Pillow
    accepts), goes to Pillow, which decides as before; a truncated file fails there too.
    """
    side = shrink_to or 0
    try:
        return simplejpeg.decode_jpeg(data, "RGB", min_height=side, min_width=side, min_factor=2 if side else 1)
    except ValueError:
        return None


def decode_image(data: bytes, max_pixels: int, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """`decode` at full resolution, as a Pillow image."""
    return Image.fromarray(decode(data, max_pixels, background).pixels)


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
        # A contiguous copy first: OpenCV resizes a strided view ~1.5× slower than it copies one.
        return resize_pixels(np.ascontiguousarray(pixels[top : top + side, left : left + side]), size, size)
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
    while min(pixels.shape[1] / width, pixels.shape[0] / height) >= 2:
        # A linear filter halving both sides averages each 2×2 block, as an area filter does, in a third of its time.
        pixels = cv2.resize(pixels, (pixels.shape[1] // 2, pixels.shape[0] // 2), interpolation=cv2.INTER_LINEAR)
    if pixels.shape[:2] == (height, width):
        return np.ascontiguousarray(pixels)
    shrink = max(pixels.shape[1] / width, pixels.shape[0] / height)
    if shrink >= SHRINK_NEEDS_AREA:
        interpolation = cv2.INTER_AREA  # averages every source pixel: no aliasing from large reductions
    elif shrink > 1:
        interpolation = cv2.INTER_LINEAR  # near 1:1 (DCT-scaled JPEGs land here): area's cost buys nothing
    else:
        interpolation = cv2.INTER_CUBIC
    return cv2.resize(pixels, (width, height), interpolation=interpolation)


def fit_within(pixels: np.ndarray, max_side: int) -> np.ndarray:
    """The pixels shrunk, keeping their shape, so neither side exceeds `max_side` (unchanged if they fit)."""
    height, width = pixels.shape[:2]
    scale = min(1.0, max_side / max(width, height))
    return resize_pixels(pixels, max(1, round(width * scale)), max(1, round(height * scale)))


def encode(pixels: np.ndarray, output_format: str, jpeg_quality: int) -> tuple[bytes, str, str]:
    """RGB pixels as (bytes, extension, MIME type); deterministic, so the same picture has the same sha256."""
    if output_format == "png":
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", optimize=False)
        return buffer.getvalue(), "png", "image/png"
    # libjpeg-turbo straight from the array: no Pillow image to build; full-resolution colour at high quality.
    subsampling = "444" if jpeg_quality >= 90 else "420"
    return simplejpeg.encode_jpeg(pixels, jpeg_quality, "RGB", subsampling, fastdct=False), "jpg", "image/jpeg"
