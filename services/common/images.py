"""Cheap checks every ingest path shares: what an image file really is, and is it sane."""

from __future__ import annotations

import io
import warnings

from PIL import Image

# (magic bytes, offset, format name, file extension, MIME type)
_SIGNATURES: tuple[tuple[bytes, int, str, str, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG", "jpg", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG", "png", "image/png"),
    (b"GIF87a", 0, "GIF", "gif", "image/gif"),
    (b"GIF89a", 0, "GIF", "gif", "image/gif"),
    (b"WEBP", 8, "WEBP", "webp", "image/webp"),
    (b"BM", 0, "BMP", "bmp", "image/bmp"),
    (b"II*\x00", 0, "TIFF", "tiff", "image/tiff"),
    (b"MM\x00*", 0, "TIFF", "tiff", "image/tiff"),
)

DEFAULT_MAX_PIXELS = 64_000_000


class ImageRejectedError(ValueError):
    """The bytes are not an image we accept; the message says why."""


def sniff_image_type(head: bytes) -> tuple[str, str] | None:
    """(extension, MIME type) from the first bytes, or None when no known signature matches."""
    for magic, offset, _, extension, mime in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic and (magic != b"WEBP" or head[:4] == b"RIFF"):
            return extension, mime
    return None


def inspect_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, str, int, int]:
    """Validate encoded image bytes; return (extension, MIME type, width, height).

    Raises ImageRejectedError for unknown signatures, decompression bombs and corrupt files.
    """
    sniffed = sniff_image_type(data[:16])
    if sniffed is None:
        raise ImageRejectedError("not an image: no JPEG/PNG/GIF/WebP/BMP/TIFF signature")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageRejectedError(f"image of {width}x{height} exceeds the {max_pixels} pixel cap")
                image.verify()
            # verify() checks structure only; a truncated JPEG passes it. Decoding the first frame
            # catches that before a broken file is stored and reaches the later stages.
            with Image.open(io.BytesIO(data)) as image:
                image.load()
    except ImageRejectedError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageRejectedError(f"decompression bomb refused: {error}") from None
    except Exception as error:
        raise ImageRejectedError(f"corrupt or truncated image: {error}") from None
    return sniffed[0], sniffed[1], width, height
