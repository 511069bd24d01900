"""Safe decoding of broken and odd files, and normalisation to a square."""

from __future__ import annotations

import io
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from services.filter.imaging import DecodeError, decode, decode_image, normalise, resize_pixels
from tests.filter.fixtures import encoded, scene

CAP = 10_000_000
WHITE = (255, 255, 255)


def test_a_picture_over_the_pixel_cap_is_refused_without_decoding() -> None:
    with pytest.raises(DecodeError) as refused:
        decode_image(encoded(Image.new("RGB", (400, 300))), max_pixels=100_000)
    assert refused.value.reason == "too_large"


def test_a_decompression_bomb_header_is_refused() -> None:
    # A tiny PNG that claims 60000×60000 pixels: refused from the header, nothing allocated.
    data = bytearray(encoded(Image.new("1", (1, 1))))
    data[16:24] = (60000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(data[12:29]).to_bytes(4, "big")  # a valid IHDR chunk
    with pytest.raises(DecodeError) as refused:
        decode_image(bytes(data), max_pixels=CAP)
    assert refused.value.reason == "too_large"


@pytest.mark.parametrize(
    "data",
    [
        encoded(scene(1), "JPEG")[:2000],  # truncated
        encoded(scene(1))[:-200],  # PNG missing its tail
        b"\x89PNG\r\n\x1a\n" + b"\0" * 100,  # a signature and garbage
        b"not an image at all",
    ],
    ids=["truncated-jpeg", "truncated-png", "corrupt-png", "text"],
)
def test_broken_files_are_rejected_with_a_reason(data: bytes) -> None:
    with pytest.raises(DecodeError) as refused:
        decode_image(data, CAP)
    assert refused.value.reason == "undecodable"
    assert str(refused.value)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (60, 30), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    decoded = decode_image(encoded(image, "JPEG", exif=exif), CAP)
    assert decoded.size == (30, 60)


@pytest.mark.parametrize(
    ("image", "image_format"),
    [
        (Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG"),
        (Image.new("RGB", (40, 30), (200, 10, 10)).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        (Image.new("L", (40, 30), 90), "PNG"),
        (Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16)), "PNG"),
        (Image.new("1", (40, 30), 1), "BMP"),
    ],
    ids=["cmyk", "palette", "grey", "16-bit", "bilevel"],
)
def test_odd_modes_become_rgb(image: Image.Image, image_format: str) -> None:
    decoded = decode_image(encoded(image, image_format), CAP)
    assert decoded.mode == "RGB"
    assert decoded.size == (40, 30)


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    sixteen_bit = Image.fromarray(np.full((30, 40), 32768, dtype=np.uint16))
    assert decode_image(encoded(sixteen_bit), CAP).getpixel((0, 0)) == (128, 128, 128)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_painted_on_the_background(mode: str) -> None:
    image = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    image.paste((10, 20, 30, 255), (0, 0, 20, 30))
    if mode == "LA":
        image = image.convert("LA")
    elif mode == "P":
        image = image.convert("P")
        image.info["transparency"] = image.getpixel((39, 0))
    decoded = decode_image(encoded(image), CAP, background=(0, 128, 255))
    assert decoded.getpixel((39, 0)) == (0, 128, 255)
    assert decoded.getpixel((0, 0)) != (0, 128, 255)


def test_an_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    red, _, blue = decode_image(buffer.getvalue(), CAP).getpixel((5, 5))
    assert red > 200 and blue < 50


@pytest.mark.parametrize("mode", ["center-crop", "pad", "resize"])
def test_every_mode_makes_a_square_of_the_asked_size(mode: str) -> None:
    square = normalise(scene(2, (640, 320)), 512, mode, WHITE)  # type: ignore[arg-type]
    assert square.size == (512, 512) and square.mode == "RGB"


def test_pad_letterboxes_with_the_background_and_crop_does_not() -> None:
    wide = Image.new("RGB", (400, 200), (0, 0, 0))
    assert normalise(wide, 128, "pad", (0, 255, 0)).getpixel((64, 2)) == (0, 255, 0)
    assert normalise(wide, 128, "center-crop", (0, 255, 0)).getpixel((64, 2)) == (0, 0, 0)


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_that_still_covers_the_needed_side() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encoded(scene(4, (2200, 1100)), "JPEG", quality=90, exif=exif)
    decoded = decode(data, CAP, shrink_to=512)
    assert decoded.full_size == (1100, 2200)  # upright, at full resolution
    assert decoded.pixels.shape == (1100, 550, 3)  # 1/2 scale: 1/4 would leave the short side under 512
    assert decode(data, CAP).pixels.shape == (2200, 1100, 3)


def test_a_jpeg_is_scaled_by_a_power_of_two_only() -> None:
    data = encoded(scene(4, (2560, 1440)), "JPEG", quality=90)
    # 3/8 (960×540) would also cover 512, but libjpeg-turbo has no fast code for it: 1/2 is quicker.
    assert decode(data, CAP, shrink_to=512).pixels.shape == (720, 1280, 3)
    assert decode(data, CAP, shrink_to=360).pixels.shape == (360, 640, 3)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_turned_as_pillow_turns_it(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(scene(5, (120, 72)), "JPEG", quality=95, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    decoded = decode(data, CAP)
    assert np.array_equal(decoded.pixels, expected)
    assert decoded.full_size == (expected.shape[1], expected.shape[0])


@pytest.mark.parametrize(
    ("image", "expected_mode"),
    [(scene(6, (96, 64)), "RGB"), (scene(6, (96, 64)).convert("L"), "L"), (scene(6, (96, 64)).convert("CMYK"), "CMYK")],
    ids=["ycbcr", "grey", "cmyk"],
)
def test_a_jpeg_decodes_to_the_pixels_pillow_gives(image: Image.Image, expected_mode: str) -> None:
    data = encoded(image, "JPEG", quality=90)
    reference = Image.open(io.BytesIO(data))
    assert reference.mode == expected_mode
    assert np.array_equal(decode(data, CAP).pixels, np.asarray(reference.convert("RGB")))


def test_a_jpeg_with_stray_bytes_that_pillow_accepts_is_still_decoded() -> None:
    data = encoded(scene(7, (96, 64)), "JPEG", quality=90)
    end_of_header = data.index(b"\xff\xda")  # stray bytes before the start-of-scan marker: a libjpeg warning
    damaged = data[:end_of_header] + b"\x00\x00\x00" + data[end_of_header:]
    expected = np.asarray(Image.open(io.BytesIO(damaged)).convert("RGB"))
    assert np.array_equal(decode(damaged, CAP).pixels, expected)


def test_large_reductions_average_like_an_area_filter() -> None:
    pixels = np.asarray(scene(8, (1024, 1024)))
    halved_twice = resize_pixels(pixels, 256, 256)
    area = cv2.resize(pixels, (256, 256), interpolation=cv2.INTER_AREA)
    assert np.abs(halved_twice.astype(int) - area).max() <= 1


@pytest.mark.parametrize("source_side", [800, 864, 1000])
def test_shrinks_between_one_and_a_half_and_two_come_as_close_to_lanczos_as_an_area_filter(source_side: int) -> None:
    pixels = np.ascontiguousarray(np.asarray(scene(8, (source_side, source_side))))
    reference = np.asarray(Image.fromarray(pixels).resize((512, 512), Image.Resampling.LANCZOS)).astype(float)

    def psnr(resized: np.ndarray) -> float:
        return float(10 * np.log10(255**2 / np.mean((resized.astype(float) - reference) ** 2)))

    area = cv2.resize(pixels, (512, 512), interpolation=cv2.INTER_AREA)
    linear = cv2.resize(pixels, (512, 512), interpolation=cv2.INTER_LINEAR)
    assert psnr(resize_pixels(pixels, 512, 512)) >= psnr(area) - 0.5 > psnr(linear)
