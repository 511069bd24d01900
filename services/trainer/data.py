"""Training examples: read a captioned folder, and turn images into model-ready tensors.

A dataset folder holds images plus one of the captioner's exports: `captions.json`
(`[{"file_name", "text", …}]`), `metadata.jsonl` (imagefolder: `{"file_name", "text"}` per line)
or `captions.csv` (`image,text`). Crop and flip choices are functions of (seed, image, sample
position), never of hidden RNG state, so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

CAPTION_FILES = ("captions.json", "metadata.jsonl", "captions.csv")


class DatasetError(ValueError):
    """The dataset cannot be trained on; the message says why."""


@dataclass(frozen=True)
class TrainExample:
    image_path: Path
    text: str


def _rows(folder: Path) -> tuple[Path, list[dict[str, str]]]:
    for name in CAPTION_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            if name == "captions.json":
                rows = json.loads(path.read_text())
            elif name == "metadata.jsonl":
                rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            else:
                with path.open(newline="") as handle:
                    reader = csv.DictReader(handle)
                    rows = [{"file_name": row.get("image", ""), "text": row.get("text", "")} for row in reader]
        except (json.JSONDecodeError, csv.Error, UnicodeDecodeError) as error:
            raise DatasetError(f"{path} is not valid {path.suffix[1:]}: {error}") from None
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise DatasetError(f"{path} must be a list of objects with file_name and text")
        return path, rows
    raise DatasetError(f"{folder} has no captions ({', '.join(CAPTION_FILES)}); caption the dataset first")


def load_examples(folder: Path, trigger: str | None = None) -> list[TrainExample]:
    """Every (image, caption) pair of a captioned folder; DatasetError on anything unusable."""
    if not folder.is_dir():
        raise DatasetError(f"dataset folder {folder} does not exist")
    source, rows = _rows(folder)
    if not rows:
        raise DatasetError(f"{source} lists no images")
    examples, problems = [], []
    for number, row in enumerate(rows, start=1):
        file_name, text = str(row.get("file_name") or ""), str(row.get("text") or "").strip()
        image_path = (folder / file_name).resolve()
        if not file_name or not image_path.is_relative_to(folder.resolve()) or not image_path.is_file():
            problems.append(f"entry {number}: image {file_name!r} not found")
        elif not text:
            problems.append(f"entry {number} ({file_name}): empty caption")
        else:
            examples.append(TrainExample(image_path, f"{trigger}, {text}" if trigger else text))
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise DatasetError(f"{source}: {len(problems)} unusable entries: {shown}")
    return examples


def crop_box(width: int, height: int, resolution: int, center: bool, seed: int, index: int) -> tuple[int, int]:
    """Top-left corner of the square crop of an image already resized to shorter side `resolution`."""
    spare_x, spare_y = width - resolution, height - resolution
    if center:
        return spare_x // 2, spare_y // 2
    chooser = random.Random(f"crop-{seed}-{index}")
    return chooser.randint(0, spare_x), chooser.randint(0, spare_y)


def is_flipped(enabled: bool, seed: int, position: int) -> bool:
    """Whether the sample at global position `position` of the stream is mirrored."""
    return enabled and random.Random(f"flip-{seed}-{position}").random() < 0.5


def image_tensor(path: Path, resolution: int, center_crop: bool, seed: int, index: int) -> torch.Tensor:
    """CHW float tensor in [-1, 1]: shorter side resized to `resolution`, then a square crop."""
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise DatasetError(f"cannot read image {path.name}: {error}") from None
    scale = resolution / min(image.size)
    size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BICUBIC)
    left, top = crop_box(image.width, image.height, resolution, center_crop, seed, index)
    image = image.crop((left, top, left + resolution, top + resolution))
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()
