"""A filter test corpus made from real photographs and paintings, with the truth of every file.

The pictures are the ones scikit-image's `data` module and matplotlib's sample data ship (no
download); everything else is made from them by code, deterministically: near-duplicate copies of
each original (the reposts a crawl of fan sites brings back: framed, cropped, turned, mirrored,
rescaled, recompressed, recoloured, stamped with a logo, captioned, blurred, copied byte for byte
or re-saved losslessly), text of four kinds over busy pictures, flat and cel-shaded artwork, smooth
photographs, textless look-alikes that must stay apart, and pictures with next to nothing in them.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

# Kinds of near-duplicate copy; `exact` ones repeat the original's pixels.
EXACT_KINDS = ("byte_copy", "lossless_copy")
COPY_KINDS = (
    *EXACT_KINDS,
    "border",
    "crop",
    "rotate",
    "mirror",
    "upscale",
    "downscale",
    "jpeg30",
    "colour",
    "logo",
    "text",
    "blur",
)
TEXT_KINDS = ("subtitle", "meme", "corner_url", "watermark")


@dataclass(frozen=True)
class CorpusFile:
    name: str
    data: bytes
    kind: str  # "original", a COPY_KINDS entry, "lookalike", "flat", "smooth", "uniform"
    group: str | None = None  # the original this file is a near duplicate of (None: of nothing)
    text: str | None = None  # a TEXT_KINDS entry when the file carries overlay text
    blur_radius: float = 0.0  # Gaussian blur applied (pixels of the file)
    overlay: bool = False  # carries a logo or text stamped over the picture
    flat: bool = False  # flat, cel-shaded or low-contrast artwork, or a smooth photograph: never blurry
    uniform: bool = False  # next to nothing in it

    @property
    def exact(self) -> bool:
        return self.kind in EXACT_KINDS


def _font(size: int, bold: bool = True) -> ImageFont.FreeTypeFont:
    import matplotlib

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


def _sample(name: str) -> Image.Image:
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data(name) as file:
        return Image.open(io.BytesIO(file.read())).convert("RGB")


def _skimage(name: str) -> Image.Image:
    from skimage import data

    pixels = getattr(data, name)()
    if isinstance(pixels, tuple):  # stereo_motorcycle: (left, right, disparity)
        pixels = pixels[0]
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    elif pixels.dtype != np.uint8:
        pixels = np.clip(pixels * 255, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).convert("RGB")


# The originals that get copies: busy, sharp, textless photographs of 400–1411 px.
ORIGINALS: dict[str, Callable[[], Image.Image]] = {
    "astronaut": lambda: _skimage("astronaut"),
    "camera": lambda: _skimage("camera"),
    "chelsea": lambda: _skimage("chelsea"),
    "coffee": lambda: _skimage("coffee"),
    "rocket": lambda: _skimage("rocket"),
    "motorcycle": lambda: _skimage("stereo_motorcycle"),
    "hopper": lambda: _sample("grace_hopper.jpg"),
    "retina": lambda: _skimage("retina"),
    "tissue": lambda: _skimage("immunohistochemistry"),
}
SUBTITLES = (
    "I'll never forget you, not ever.",
    "The wind is rising. We must try to live.",
    "Where did you come from, little one?",
    "Don't look back until you're out.",
)
MEMES = (("WHEN THE BATH HOUSE", "OPENS AT NIGHT"), ("NOBODY:", "ME AT 3AM"), ("ONE DOES NOT SIMPLY", "LEAVE"))
URLS = ("www.ghibli-walls.net", "fanart.example.org/totoro", "@spiritedfan")
WATERMARKS = ("SAMPLE", "© ANIMEWALLS", "PREVIEW")


def encode(image: Image.Image, image_format: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    if image_format == "JPEG":
        options = {"quality": 92, **options}
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def add_border(image: Image.Image, fraction: float, colour: tuple[int, int, int]) -> Image.Image:
    """A frame around the picture, `fraction` of its size on each side."""
    pad_x, pad_y = round(image.width * fraction), round(image.height * fraction)
    framed = Image.new("RGB", (image.width + 2 * pad_x, image.height + 2 * pad_y), colour)
    framed.paste(image, (pad_x, pad_y))
    return framed


def letterbox(image: Image.Image, fraction: float) -> Image.Image:
    """Black bars above and below, as a wide still posted in a taller frame."""
    bar = round(image.height * fraction)
    boxed = Image.new("RGB", (image.width, image.height + 2 * bar), (0, 0, 0))
    boxed.paste(image, (0, bar))
    return boxed


def crop(image: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    """Cut these fractions off each side."""
    width, height = image.size
    return image.crop(
        (round(width * left), round(height * top), round(width * (1 - right)), round(height * (1 - bottom)))
    )


def rotate(image: Image.Image, degrees: float) -> Image.Image:
    """Turned, then cropped to the largest centred rectangle with no empty corners."""
    turned = image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=False)
    radians = np.radians(abs(degrees))
    width, height = image.size
    # The rectangle of the original's aspect that fits inside the turned picture.
    scale = 1 / (np.cos(radians) + np.sin(radians) * max(width / height, height / width))
    inner_width, inner_height = width * scale, height * scale
    left, top = (width - inner_width) / 2, (height - inner_height) / 2
    return turned.crop((round(left), round(top), round(left + inner_width), round(top + inner_height)))


def rescale(image: Image.Image, factor: float) -> Image.Image:
    size = (round(image.width * factor), round(image.height * factor))
    return image.resize(size, Image.Resampling.BICUBIC if factor > 1 else Image.Resampling.LANCZOS)


def recolour(image: Image.Image, variant: int) -> Image.Image:
    """A warm tint, a saturation boost or a faded look (what reposting apps apply)."""
    if variant % 3 == 0:
        pixels = np.asarray(image).astype(np.int16) + np.array((18, 6, -14), dtype=np.int16)
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if variant % 3 == 1:  # more saturated and a little darker (a grey picture changes too)
        return ImageEnhance.Brightness(ImageEnhance.Color(image).enhance(1.5)).enhance(0.9)
    faded = ImageEnhance.Contrast(image).enhance(0.8)
    return ImageEnhance.Brightness(faded).enhance(1.08)


def stamp_logo(image: Image.Image, corner: int) -> Image.Image:
    """matplotlib's logo over a corner, a fifth of the picture wide."""
    logo = _sample("logo2.png")
    width = image.width // 5
    logo = logo.resize((width, max(1, round(logo.height * width / logo.width))), Image.Resampling.LANCZOS)
    stamped = image.copy()
    margin = image.width // 40
    x = margin if corner % 2 == 0 else image.width - logo.width - margin
    y = margin if corner < 2 else image.height - logo.height - margin
    stamped.paste(logo, (x, y))
    return stamped


def _outlined(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font: ImageFont.FreeTypeFont) -> None:
    stroke = max(2, font.size // 12)
    draw.text(xy, text, font=font, fill=(255, 255, 255), stroke_width=stroke, stroke_fill=(0, 0, 0), anchor="mm")


def subtitle(image: Image.Image, line: str) -> Image.Image:
    """A film subtitle: white, outlined, 18–26 px on a 512-px-high picture, near the bottom."""
    captioned = image.copy()
    size = max(14, round(image.height * (18 + 2 * (len(line) % 5)) / 512))
    _outlined(ImageDraw.Draw(captioned), (image.width / 2, image.height * 0.9), line, _font(size, bold=False))
    return captioned


def meme(image: Image.Image, lines: tuple[str, str]) -> Image.Image:
    """Bold outlined captions at the top and bottom of the picture's central square (what a centre crop keeps)."""
    captioned = image.copy()
    draw = ImageDraw.Draw(captioned)
    side = min(image.size)
    top = (image.height - side) / 2
    for text, height_share in zip(lines, (0.09, 0.91), strict=True):
        size = round(side * 0.075)
        font = _font(size)
        while draw.textlength(text, font=font) > side * 0.92 and size > 10:
            size -= 2
            font = _font(size)
        _outlined(draw, (image.width / 2, top + side * height_share), text, font)
    return captioned


def corner_url(image: Image.Image, url: str) -> Image.Image:
    """A small light-grey address, 14–16 px on a 512-px picture, in the bottom-right corner of the
    picture's central square (what a centre crop keeps: text cropped away is not trained on)."""
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    side = min(image.size)
    font = _font(max(11, round(side * (14 + len(url) % 3) / 512)), bold=False)
    right, bottom = (image.width + side) / 2 - side / 50, (image.height + side) / 2 - side / 50
    draw.text((right, bottom), url, font=font, fill=(235, 235, 235, 220), anchor="rd")
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def watermark(image: Image.Image, text: str, degrees: float) -> Image.Image:
    """Large semi-transparent white text across the middle, turned by `degrees`."""
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    size = round(min(image.size) * 0.16)
    font = _font(size)
    while draw.textlength(text, font=font) > image.width * 0.8 and size > 12:
        size -= 4
        font = _font(size)
    draw.text((image.width / 2, image.height / 2), text, font=font, fill=(255, 255, 255, 100), anchor="mm")
    layer = layer.rotate(degrees, resample=Image.Resampling.BICUBIC)
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def with_text(image: Image.Image, kind: str, index: int) -> Image.Image:
    if kind == "subtitle":
        return subtitle(image, SUBTITLES[index % len(SUBTITLES)])
    if kind == "meme":
        return meme(image, MEMES[index % len(MEMES)])
    if kind == "corner_url":
        return corner_url(image, URLS[index % len(URLS)])
    return watermark(image, WATERMARKS[index % len(WATERMARKS)], (0, 20, -25)[index % 3])


def cel_shaded(image: Image.Image, colours: int = 6) -> Image.Image:
    """Flat colour areas (k-means palette after an edge-preserving smoothing) with dark outlines."""
    pixels = cv2.bilateralFilter(np.asarray(image), 9, 60, 9)
    samples = pixels.reshape(-1, 3).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    cv2.setRNGSeed(7)
    _, labels, centres = cv2.kmeans(samples, colours, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
    flat = centres.astype(np.uint8)[labels.ravel()].reshape(pixels.shape)
    grey = cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY)
    outline = cv2.dilate(cv2.Canny(grey, 30, 90), np.ones((2, 2), np.uint8)) > 0
    flat[outline] = (30, 25, 20)
    return Image.fromarray(flat)


def low_contrast(image: Image.Image, span: int = 40) -> Image.Image:
    """A washed-out painting: the picture's values squeezed into `span` levels around mid-grey."""
    pixels = np.asarray(image).astype(np.float32)
    return Image.fromarray((128 - span / 2 + pixels * (span / 255)).astype(np.uint8))


def _copies(name: str, original: Image.Image, index: int) -> list[tuple[str, Image.Image | bytes, dict]]:
    """(kind, picture or exact bytes, truth fields) of every near-duplicate copy of one original."""
    text_kind = TEXT_KINDS[index % len(TEXT_KINDS)]
    border = (
        add_border(original, 0.08 + 0.01 * (index % 3), ((0, 0, 0), (255, 255, 255), (40, 40, 40))[index % 3])
        if index % 2 == 0
        else letterbox(original, 0.12)
    )
    crop_share = 0.05 + 0.0125 * (index % 9)  # 5–15% of the area cut
    sides = (crop_share * 0.7, crop_share * 0.3, crop_share * 0.2, crop_share * 0.5)
    copies: list[tuple[str, Image.Image | bytes, dict]] = [
        ("border", border, {}),
        ("crop", crop(original, *sides[index % 4 :], *sides[: index % 4]), {}),
        ("rotate", rotate(original, (2 + 3 * (index % 4) / 3) * (1 if index % 2 else -1)), {}),
        ("mirror", original.transpose(Image.Transpose.FLIP_LEFT_RIGHT), {}),
        ("upscale", rescale(original, 1.4 + 0.1 * (index % 3)), {}),
        # Three quarters, or as little less as keeps the shorter side at 280 (the filter drops under 256).
        ("downscale", rescale(original, max(0.75, 280 / min(original.size))), {}),
        ("jpeg30", Image.open(io.BytesIO(encode(original, quality=30))).convert("RGB"), {}),
        ("colour", recolour(original, index), {}),
        ("logo", stamp_logo(original, index % 4), {"overlay": True}),
        ("text", with_text(original, text_kind, index), {"overlay": True, "text": text_kind}),
    ]
    if index < 5:  # five photographs blurred at radius 2 or 3 (the "every radius ≥ 2")
        radius = 2.0 if index % 2 == 0 else 3.0
        copies.append(("blur", original.filter(ImageFilter.GaussianBlur(radius)), {"blur_radius": radius}))
    return copies


def build() -> list[CorpusFile]:
    """Every file, in a fixed order; the same bytes on every call."""
    return list(_build())


@cache
def _build() -> tuple[CorpusFile, ...]:
    files: list[CorpusFile] = []
    for index, (name, load) in enumerate(ORIGINALS.items()):
        original = load()
        original_bytes = encode(original)
        files.append(CorpusFile(f"{name}.jpg", original_bytes, "original", group=name))
        files.append(CorpusFile(f"{name}-copy.jpg", original_bytes, "byte_copy", group=name))
        decoded = Image.open(io.BytesIO(original_bytes)).convert("RGB")
        lossless = "BMP" if index % 2 else "PNG"
        files.append(
            CorpusFile(f"{name}-resaved.{lossless.lower()}", encode(decoded, lossless), "lossless_copy", group=name)
        )
        for kind, picture, truth in _copies(name, original, index):
            data = picture if isinstance(picture, bytes) else encode(picture)
            files.append(CorpusFile(f"{name}-{kind}.jpg", data, kind, group=name, **truth))

    # Text over pictures that have no copies: more of each kind.
    hubble, china, flower = _skimage("hubble_deep_field"), _sklearn("china.jpg"), _sklearn("flower.jpg")
    extra_text = [
        ("hubble-top-left", crop(hubble, 0, 0, 0.45, 0.6), "subtitle"),
        ("hubble-top-right", crop(hubble, 0.55, 0, 0, 0.6), "subtitle"),
        ("china-left", crop(china, 0, 0, 0.5, 0), "meme"),
        ("coins", _skimage("coins").resize((576, 454), Image.Resampling.BICUBIC), "corner_url"),
        ("gravel", _skimage("gravel"), "corner_url"),
        ("flower-left", crop(flower, 0, 0, 0.5, 0), "watermark"),
    ]
    for index, (name, picture, kind) in enumerate(extra_text):
        files.append(CorpusFile(f"{name}-{kind}.jpg", encode(with_text(picture, kind, index + 1)), kind, text=kind))

    # Textless look-alikes: the same texture or kind of scene, not the same picture.
    files += [
        CorpusFile("hubble-bottom-left.jpg", encode(crop(hubble, 0, 0.45, 0.55, 0)), "lookalike"),
        CorpusFile("hubble-bottom-right.jpg", encode(crop(hubble, 0.55, 0.45, 0, 0)), "lookalike"),
        CorpusFile("grass.jpg", encode(_skimage("grass")), "lookalike"),
        CorpusFile("brick.jpg", encode(_skimage("brick")), "lookalike"),
    ]

    # Flat, cel-shaded and low-contrast artwork and smooth photographs: never blurry, never uniform.
    flat = [
        ("colorwheel", _skimage("colorwheel").resize((512, 512), Image.Resampling.BICUBIC)),
        ("present", _sample("Minduka_Present_Blue_Pack.png").resize((512, 512), Image.Resampling.NEAREST)),
        ("horse-silhouette", _skimage("horse").resize((500, 410), Image.Resampling.NEAREST)),
        ("blobs", _skimage("binary_blobs")),
        ("phantom", _skimage("shepp_logan_phantom")),
        ("cel-china", cel_shaded(crop(china, 0.5, 0, 0, 0).resize((480, 640)))),
        ("cel-flower-washed", low_contrast(cel_shaded(crop(flower, 0.5, 0, 0, 0).resize((480, 640)), 5), 40)),
        ("relief", hill_shade()),
        ("relief-washed", low_contrast(hill_shade().transpose(Image.Transpose.ROTATE_180), 36)),
        ("moon", _skimage("moon")),
    ]
    files += [CorpusFile(f"{name}.png", encode(picture, "PNG"), "flat", flat=True) for name, picture in flat]

    # Next to nothing: a solid colour, a faint gradient, a blank page with a speck.
    solid = Image.new("RGB", (640, 480), (120, 150, 200))
    ramp = np.tile(np.linspace(110, 122, 640, dtype=np.float32), (480, 1)).astype(np.uint8)
    speck = Image.new("RGB", (600, 600), (250, 250, 250))
    ImageDraw.Draw(speck).ellipse((300, 300, 304, 304), fill=(20, 20, 20))
    files += [
        CorpusFile(f"{name}.jpg", encode(picture), "uniform", uniform=True)
        for name, picture in (
            ("solid", solid),
            ("faint-gradient", Image.fromarray(ramp).convert("RGB")),
            ("speck", speck),
        )
    ]
    return tuple(files)


def _sklearn(name: str) -> Image.Image:
    from sklearn.datasets import load_sample_image

    return Image.fromarray(load_sample_image(name))


def hill_shade() -> Image.Image:
    """matplotlib's sample elevation map (Jacksboro fault) as a lit relief, 1.5× its size: a smooth picture."""
    from matplotlib.colors import LightSource

    with np.load(_sample_path("jacksboro_fault_dem.npz")) as dem:
        elevation = dem["elevation"]
    import matplotlib

    shaded = LightSource(azdeg=315, altdeg=40).shade(
        elevation, cmap=matplotlib.colormaps["gist_earth"], vert_exag=0.05, blend_mode="soft"
    )
    picture = Image.fromarray((shaded[..., :3] * 255).astype(np.uint8))
    return picture.resize((round(picture.width * 1.5), round(picture.height * 1.5)), Image.Resampling.BICUBIC)


def _sample_path(name: str) -> str:
    import matplotlib.cbook

    return str(matplotlib.cbook.get_sample_data(name, asfileobj=False))


def write(folder: Path) -> list[CorpusFile]:
    """The corpus as files in `folder` (made if missing); returns the truth."""
    folder.mkdir(parents=True, exist_ok=True)
    files = build()
    for file in files:
        (folder / file.name).write_bytes(file.data)
    return files


@dataclass
class Scores:
    """How a filter report (entries with `source` = the file's name) matches the corpus's truth."""

    entries_per_file: bool
    pair_precision: float  # over every pair of files the report puts in one near-duplicate group
    pair_recall: float  # over every pair of files that are copies of one original
    copy_recall: dict[str, float]  # per copy kind: share of copies grouped with their original
    keeper_misses: list[str]  # groups whose kept member is not the original (or a copy with its pixels)
    exact_misses: list[str]  # exact copies not reported as exact duplicates (when not kept)
    text_found: int
    text_total: int
    text_false: list[str]  # textless files flagged as text
    blur_found: int
    blur_total: int
    blur_false: list[str]  # unblurred files flagged as blurry
    uniform_found: int
    uniform_total: int
    uniform_false: list[str]

    def table(self) -> str:
        rows = [
            f"entries one per file: {self.entries_per_file}",
            f"near-duplicate pairs: precision {self.pair_precision:.3f}, recall {self.pair_recall:.3f}",
            "per copy kind: " + ", ".join(f"{kind} {share:.2f}" for kind, share in self.copy_recall.items()),
            f"keeper not the original: {self.keeper_misses or 'none'}",
            f"exact copies not named exact: {self.exact_misses or 'none'}",
            f"text: {self.text_found}/{self.text_total} found, false: {self.text_false or 'none'}",
            f"blur: {self.blur_found}/{self.blur_total} found, false: {self.blur_false or 'none'}",
            f"uniform: {self.uniform_found}/{self.uniform_total} found, false: {self.uniform_false or 'none'}",
        ]
        return "\n".join(rows)


def score(entries: list[dict], files: list[CorpusFile]) -> Scores:
    """`entries`: the filter report's, each with `source` naming its file and `problems` listing failed checks."""
    by_name = {entry["source"]: entry for entry in entries}
    truth = {file.name: file for file in files}

    def predicted_group(name: str) -> object:
        entry = by_name[name]
        return entry["group"] if entry["group"] is not None else ("alone", name)

    names = [file.name for file in files if file.name in by_name]
    true_pairs = found_pairs = true_found = 0
    for position, first in enumerate(names):
        for second in names[position + 1 :]:
            same_truth = truth[first].group is not None and truth[first].group == truth[second].group
            same_found = predicted_group(first) == predicted_group(second)
            true_pairs += same_truth
            found_pairs += same_found
            true_found += same_truth and same_found
    copy_recall: dict[str, float] = {}
    for kind in COPY_KINDS:
        copies = [file for file in files if file.kind == kind]
        grouped = sum(predicted_group(file.name) == predicted_group(f"{file.group}.jpg") for file in copies)
        copy_recall[kind] = grouped / len(copies) if copies else 1.0
    keeper_misses, exact_misses = [], []
    for group in sorted({file.group for file in files if file.group}):
        members = [file for file in files if file.group == group]
        kept = [file for file in members if by_name[file.name]["status"] == "kept"]
        if not kept or any(file.kind not in ("original", *EXACT_KINDS) for file in kept):
            keeper_misses.append(f"{group}: kept {[file.name for file in kept]}")
        exact_misses += [
            file.name
            for file in members
            if file.exact
            and by_name[file.name]["status"] != "kept"
            and by_name[file.name]["reason"] != "exact_duplicate"
        ]

    def flagged(problem: str, wanted: Callable[[CorpusFile], bool], unwanted: Callable[[CorpusFile], bool]):
        found = [file for file in files if wanted(file) and problem in by_name[file.name]["problems"]]
        false = [file.name for file in files if unwanted(file) and problem in by_name[file.name]["problems"]]
        return len(found), sum(wanted(file) for file in files), false

    text = flagged("text", lambda file: file.text is not None, lambda file: not file.overlay and file.text is None)
    blur = flagged(
        "blurry", lambda file: file.blur_radius >= 2, lambda file: file.blur_radius == 0 and not file.uniform
    )
    uniform = flagged("uniform", lambda file: file.uniform, lambda file: not file.uniform)
    return Scores(
        len(entries) == len(files) and set(by_name) == set(truth),
        true_found / found_pairs if found_pairs else 1.0,
        true_found / true_pairs if true_pairs else 1.0,
        copy_recall,
        keeper_misses,
        exact_misses,
        *text,
        *blur,
        *uniform,
    )
