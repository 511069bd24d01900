"""Text check benchmark: how much rendered text the filter flags, by style and size, and what it costs.

    .venv/bin/python bench/text_bench.py                 # 150 scenes with text, 60 without: ~1 min
    .venv/bin/python bench/text_bench.py --scenes 300

Each scene (the filter tests' textured pictures, 512²) gets one line of text in a DejaVu font at
12–40 px, in one of three styles: a dark caption in a white box (what `with_text` draws), white
text with a black outline (subtitles, fan-art signatures) and translucent white text (a
watermark). Rows: the filter's detector (pre-screen, then Tesseract on the band around the lines
it found) against Tesseract alone on the whole picture (the reference), both judged with the
default `text_max_words` / `text_max_area`; the pre-screen's own pass rate shows which of the two
halves misses what. Textless scenes give the false-positive rate.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.filter.params import FilterOptions
from services.filter.text import ScreenedDetector, TesseractDetector, TextDetector, text_line_boxes
from tests.filter.fixtures import scene

FONTS = ("DejaVuSans.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf")
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
TEXTS = ("FREE WALLPAPER DOWNLOAD", "studio ghibli hd", "www.example.com", "(c) 2024 fanart", "Delivery Service")
STYLES = ("caption box", "outlined", "translucent")
SIZES = (12, 14, 16, 20, 28, 40)
SIDE = 512


def draw_text(
    picture: Image.Image, text: str, font: ImageFont.FreeTypeFont, at: tuple[int, int], style: str
) -> Image.Image:
    marked = picture.copy()
    draw = ImageDraw.Draw(marked)
    if style == "caption box":
        left, top, right, bottom = draw.textbbox(at, text, font=font)
        draw.rectangle((left - 6, top - 6, right + 6, bottom + 6), fill=(255, 255, 255))
        draw.text(at, text, fill=(0, 0, 0), font=font)
    elif style == "outlined":
        draw.text(at, text, fill=(255, 255, 255), font=font, stroke_width=1, stroke_fill=(0, 0, 0))
    else:
        overlay = Image.new("RGBA", marked.size, (0, 0, 0, 0))
        ImageDraw.Draw(overlay).text(at, text, fill=(255, 255, 255, 140), font=font)
        marked = Image.alpha_composite(marked.convert("RGBA"), overlay).convert("RGB")
    return marked


def make_pictures(count: int, seed: int = 0) -> list[tuple[str, int, Image.Image]]:
    """(style, font size, picture) with text, `count` of them; the style is "none" for the textless ones."""
    rng = np.random.default_rng(seed)
    pictures = []
    for number in range(count):
        size = int(rng.choice(SIZES))
        font = ImageFont.truetype(str(FONT_DIR / FONTS[number % len(FONTS)]), size)
        at = (int(rng.integers(5, 200)), int(rng.integers(5, SIDE - 2 * size)))
        style = STYLES[number % len(STYLES)]
        pictures.append(
            (style, size, draw_text(scene(number, (SIDE, SIDE)), TEXTS[number % len(TEXTS)], font, at, style))
        )
    return pictures


def rgb_and_grey(picture: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(picture.convert("RGB")), np.asarray(picture.convert("L"))


def flags(detector: TextDetector, options: FilterOptions) -> Callable[[Image.Image], bool]:
    def flagged(picture: Image.Image) -> bool:
        finding = detector.detect(*rgb_and_grey(picture))
        return finding.words >= options.text_max_words or finding.area >= options.text_max_area

    return flagged


def passes_prescreen(picture: Image.Image) -> bool:
    return len(text_line_boxes(np.asarray(picture.convert("L")))) > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=150, help="Scenes with text (a third of each style).")
    parser.add_argument("--textless", type=int, default=60)
    args = parser.parse_args()

    options = FilterOptions()
    with_text = make_pictures(args.scenes)
    textless = [scene(10_000 + number, (SIDE, SIDE)) for number in range(args.textless)]
    tesseract = TesseractDetector()
    checks: list[tuple[str, Callable[[Image.Image], bool]]] = [
        ("Tesseract on the whole picture (reference)", flags(tesseract, options)),
        ("ours: pre-screen, Tesseract on the band", flags(ScreenedDetector(tesseract), options)),
        ("ours: pre-screen passes (sent to OCR)", passes_prescreen),
    ]
    groups = [
        (f"{style}, {sizes[0]}–{sizes[-1]} px", [p for s, size, p in with_text if s == style and size in sizes])
        for style in STYLES
        for sizes in (SIZES[:3], SIZES[3:])
    ]
    print(f"{args.scenes} scenes with text, {args.textless} without; share flagged (n in brackets)")
    header = ["check", *(f"{label} ({len(members)})" for label, members in groups), f"textless ({len(textless)})"]
    print("| " + " | ".join([*header, "ms a picture", "× reference time"]) + " |")
    print("|" + "---|" * (len(header) + 2))
    reference_ms = None
    for label, check in checks:
        started = time.perf_counter()
        rates = [np.mean([check(picture) for picture in members]) for _, members in groups]
        false_positives = np.mean([check(picture) for picture in textless])
        per_picture_ms = (time.perf_counter() - started) * 1000 / (len(with_text) + len(textless))
        reference_ms = reference_ms or per_picture_ms
        cells = [f"{rate:.2f}" for rate in [*rates, false_positives]]
        print(f"| {label} | " + " | ".join(cells) + f" | {per_picture_ms:.1f} | {per_picture_ms / reference_ms:.2f} |")


if __name__ == "__main__":
    main()
