"""The caption set and its export files, rendered from one list so they can never disagree.

Every format names the same `file_name` (the clean image's content-addressed name) and the same
text. Paths are relative to the captions folder, which holds:

    captions.json              canonical list (what the trainer and the API read)
    captions.csv               header `image,text`; `image` is `imagefolder/<file_name>`
    captions.txt               `<file_name><TAB><text>` per line
    imagefolder/metadata.jsonl `{"file_name", "text"}` per line, images beside it: what
                               `load_dataset("imagefolder", data_dir=...)` and diffusers'
                               train_text_to_image_lora.py (`--image_column image
                               --caption_column text`) load
    kohya/<stem>.txt           one sidecar per image, images beside them (kohya-ss layout)
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import PurePosixPath

from pydantic import BaseModel, Field

CAPTIONS_JSON = "captions.json"
CAPTIONS_CSV = "captions.csv"
CAPTIONS_TXT = "captions.txt"
IMAGEFOLDER = "imagefolder"
METADATA_JSONL = f"{IMAGEFOLDER}/metadata.jsonl"
KOHYA = "kohya"
IMAGE_COLUMN, CAPTION_COLUMN = "image", "text"  # diffusers' defaults for --image_column/--caption_column


class CaptionEntry(BaseModel):
    file_name: str = Field(pattern=r"^[A-Za-z0-9._=+@-]+$")
    image_key: str
    text: str
    source_sha256: str | None = None
    character: str | None = None
    movie: str | None = None
    edited: bool = False  # written by a person: a rerun of the caption job keeps it


def sidecar_path(file_name: str) -> str:
    return f"{KOHYA}/{PurePosixPath(file_name).stem}.txt"


def image_paths(file_name: str) -> tuple[str, str]:
    """Where each export folder keeps its copy of the image."""
    return f"{IMAGEFOLDER}/{file_name}", f"{KOHYA}/{file_name}"


def render_tables(entries: list[CaptionEntry]) -> dict[str, bytes]:
    """captions.json, .csv, .txt and metadata.jsonl (everything but the per-image files)."""
    csv_buffer = io.StringIO()
    writer = csv.writer(csv_buffer, lineterminator="\n")
    writer.writerow([IMAGE_COLUMN, CAPTION_COLUMN])
    for entry in entries:
        writer.writerow([f"{IMAGEFOLDER}/{entry.file_name}", entry.text])
    return {
        CAPTIONS_JSON: json.dumps([entry.model_dump() for entry in entries], indent=1, ensure_ascii=False).encode(),
        CAPTIONS_CSV: csv_buffer.getvalue().encode(),
        CAPTIONS_TXT: "".join(f"{entry.file_name}\t{_one_line(entry.text)}\n" for entry in entries).encode(),
        METADATA_JSONL: "".join(
            json.dumps({"file_name": entry.file_name, CAPTION_COLUMN: entry.text}, ensure_ascii=False) + "\n"
            for entry in entries
        ).encode(),
    }


def render_sidecar(entry: CaptionEntry) -> bytes:
    return (_one_line(entry.text) + "\n").encode()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def check_unique_names(entries: list[CaptionEntry]) -> None:
    """Two images with one file name (or one kohya stem) would overwrite each other's caption."""
    seen: dict[str, str] = {}
    for entry in entries:
        for name in (entry.file_name, sidecar_path(entry.file_name)):
            if name in seen and seen[name] != entry.image_key:
                raise ValueError(f"{entry.image_key} and {seen[name]} both export as {name}")
            seen[name] = entry.image_key
