"""Procedural pictures for the offline demo: painted-looking landscapes with a figure in them.

Each character gets its own palette (clothes, hair) so captions and per-character counts differ.
A few deliberately bad images (a blurred copy, a rescaled near-duplicate, one with a caption
burnt in, a tiny one) give the filter something real to drop.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIZE = 640

_SKIES = [((116, 178, 232), (226, 240, 250)), ((250, 190, 140), (255, 236, 200)), ((60, 80, 140), (150, 170, 210))]
_GRASS = [(86, 160, 72), (120, 176, 90), (70, 130, 80), (150, 170, 80)]


def _vertical_gradient(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    column = Image.new("RGB", (1, SIZE))
    for y in range(SIZE):
        mix = y / (SIZE - 1)
        column.putpixel((0, y), tuple(round(a + (b - a) * mix) for a, b in zip(top, bottom, strict=True)))
    return column.resize((SIZE, SIZE))


def _scene(rng: random.Random, clothes: tuple[int, int, int], hair: tuple[int, int, int]) -> Image.Image:
    image = _vertical_gradient(*rng.choice(_SKIES))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(2, 5)):  # clouds
        x, y, width = rng.randint(-50, SIZE), rng.randint(20, 220), rng.randint(80, 200)
        for bump in range(4):
            offset = bump * width // 4
            draw.ellipse((x + offset, y - 20, x + offset + width // 2, y + 30), fill=(250, 250, 250))
    for layer in range(3):  # rolling hills, far to near
        colour = tuple(max(0, channel - 25 * layer) for channel in rng.choice(_GRASS))
        base = SIZE // 2 + layer * 70 + rng.randint(-20, 20)
        points = [(x, base + rng.randint(-40, 40)) for x in range(-40, SIZE + 80, 80)]
        draw.polygon([*points, (SIZE, SIZE), (0, SIZE)], fill=colour)
    for _ in range(rng.randint(1, 4)):  # trees
        x, y = rng.randint(0, SIZE), rng.randint(SIZE // 2, SIZE - 60)
        draw.rectangle((x - 5, y, x + 5, y + 40), fill=(90, 60, 40))
        draw.ellipse((x - 30, y - 50, x + 30, y + 10), fill=(40, 110 + rng.randint(0, 40), 50))
    # The figure: dress or coat, head, hair.
    cx, feet = rng.randint(180, SIZE - 180), rng.randint(SIZE - 120, SIZE - 40)
    height = rng.randint(220, 300)
    draw.polygon([(cx, feet - height + 70), (cx - 60, feet), (cx + 60, feet)], fill=clothes)
    draw.ellipse((cx - 34, feet - height, cx + 34, feet - height + 70), fill=(250, 220, 190))
    draw.chord((cx - 38, feet - height - 8, cx + 38, feet - height + 50), 180, 360, fill=hair)
    return image.filter(ImageFilter.SMOOTH)


def _with_text(image: Image.Image, text: str) -> Image.Image:
    marked = image.copy()
    draw = ImageDraw.Draw(marked)
    font = ImageFont.load_default(size=48)
    draw.rectangle((20, 20, SIZE - 20, 110), fill=(255, 255, 255))
    draw.text((40, 35), text, fill=(0, 0, 0), font=font)
    return marked


def generate_demo_images(directory: Path, characters: list[dict[str, str]], per_character: int = 8) -> int:
    """Write `<directory>/<character>/<n>.png` (plus a few bad ones); return how many files."""
    written = 0
    for index, entry in enumerate(characters):
        rng = random.Random(index)
        folder = directory / entry["character"].replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        clothes = tuple(rng.randint(30, 230) for _ in range(3))
        hair = tuple(rng.randint(10, 120) for _ in range(3))
        scenes = [_scene(rng, clothes, hair) for _ in range(per_character)]  # type: ignore[arg-type]
        for number, scene in enumerate(scenes):
            scene.save(folder / f"{number:03d}.png")
        scenes[0].filter(ImageFilter.GaussianBlur(6)).save(folder / "blurred.png")
        scenes[1].resize((SIZE // 2, SIZE // 2)).save(folder / "rescaled-copy.jpg", quality=40)
        _with_text(scenes[2], "SUBSCRIBE NOW").save(folder / "with-text.png")
        scenes[3].resize((64, 64)).save(folder / "tiny.png")
        written += per_character + 4
    return written
