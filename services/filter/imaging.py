"""Safe decoding and normalisation: any accepted file becomes an upright RGB picture of a fixed size."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps

from services.filter.params import NormaliseMode


class DecodeError(ValueError):
    """The bytes cannot be turned into a picture; `reason` is the report's drop reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def decode_image(data: bytes, max_pixels: int, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Decode to an upright RGB image: first frame, EXIF orientation applied, alpha on `background`.

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
            image.load()
            upright = ImageOps.exif_transpose(image)
    except DecodeError:
        raise
    except Image.DecompressionBombError as error:
        raise DecodeError("too_large", str(error)) from None
    except Exception as error:  # Pillow raises many types for corrupt input (OSError, SyntaxError, ValueError …)
        raise DecodeError("undecodable", f"{type(error).__name__}: {error}") from None
    return to_rgb(upright, background)


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
    return image.convert("RGB")


def _stretch_to_grey(image: Image.Image) -> Image.Image:
    """32-bit integer or float grey has no fixed range: map its own extremes to 0..255."""
    low, high = image.getextrema()
    span = max(1e-9, float(high) - float(low))
    return image.point(lambda value: (value - low) * (255 / span)).convert("L")


def normalise(image: Image.Image, size: int, mode: NormaliseMode, background: tuple[int, int, int]) -> Image.Image:
    """A `size`×`size` RGB image: centre crop to square, pad (letterbox) or stretch."""
    if mode == "center-crop":
        return ImageOps.fit(image, (size, size), Image.Resampling.LANCZOS)
    if mode == "pad":
        return ImageOps.pad(image, (size, size), Image.Resampling.LANCZOS, color=background)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def encode(image: Image.Image, output_format: str, jpeg_quality: int) -> tuple[bytes, str, str]:
    """(bytes, extension, MIME type); deterministic, so the same picture has the same sha256."""
    buffer = io.BytesIO()
    if output_format == "png":
        image.save(buffer, format="PNG", optimize=False)
        return buffer.getvalue(), "png", "image/png"
    image.save(buffer, format="JPEG", quality=jpeg_quality, subsampling=0 if jpeg_quality >= 90 else 2)
    return buffer.getvalue(), "jpg", "image/jpeg"
