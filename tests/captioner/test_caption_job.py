"""The caption job on a tiny random BLIP: batches, exports diffusers can load, resume after a crash."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from services.captioner.catalog import CaptionCatalog
from services.captioner.exports import CAPTION_COLUMN, IMAGE_COLUMN
from services.captioner.params import CaptionParams
from services.captioner.tasks import run_caption
from services.common.jobs import JobContext, JobRepository, JobState
from services.common.runner import execute_job
from services.common.settings import Settings
from services.common.storage import ObjectStore
from tests.captioner.helpers import CHARACTERS, make_filtered_dataset

pytestmark = pytest.mark.usefixtures("tiny_blip_env")


def _context(store: ObjectStore, settings: Settings, **params: Any) -> JobContext:
    job = JobRepository(store).create("caption", params)
    return JobContext(job, CaptionParams.model_validate(params), store, settings)


def _download(store: ObjectStore, prefix: str, destination: Path) -> Path:
    """What a trainer does with the export: copy `captions/` to a local folder."""
    for key in store.list(prefix):
        store.download(key, destination / key[len(prefix) :])
    return destination


def test_job_writes_every_export_in_sync(any_store: ObjectStore, local_settings: Settings, tmp_path: Path) -> None:
    dataset = make_filtered_dataset(any_store, count=5)
    context = _context(
        any_store, local_settings, dataset_id=dataset.id, trigger="ghblstyle", style_suffix="in Ghibli style"
    )
    result = run_caption(context)

    assert result["count"] == 5 and result["skipped"] == [] and result["captioned_now"] == 5
    export = _download(any_store, f"datasets/{dataset.id}/captions/", tmp_path / "export")
    entries = json.loads((export / "captions.json").read_text())
    manifest = any_store.get_json(f"datasets/{dataset.id}/filtered/manifest.json")
    assert [entry["image_key"] for entry in entries] == [image["key"] for image in manifest["images"]]
    assert set(entries[0]) == {"file_name", "image_key", "text", "source_sha256", "character", "movie", "edited"}
    assert result["hand_edits_kept"] == 0 and not any(entry["edited"] for entry in entries)
    names = [c.character for c in CHARACTERS] + [c.movie for c in CHARACTERS]
    for entry in entries:
        assert entry["text"].startswith("ghblstyle, ") and entry["text"].endswith(", in Ghibli style")
        assert not any(name.lower() in entry["text"].lower() for name in names)
        assert (export / "imagefolder" / entry["file_name"]).read_bytes() == any_store.get_bytes(entry["image_key"])
        assert (export / "kohya" / entry["file_name"]).is_file()
        assert (export / "kohya" / f"{Path(entry['file_name']).stem}.txt").read_text() == entry["text"] + "\n"
    lines = (export / "captions.txt").read_text().splitlines()
    assert lines == [f"{entry['file_name']}\t{entry['text']}" for entry in entries]


def test_exports_load_with_the_columns_diffusers_expects(
    local_store: ObjectStore, local_settings: Settings, tmp_path: Path
) -> None:
    """The lab's `--caption_column value needs to be one of: image, text` cannot happen."""
    from datasets import Image as ImageFeature
    from datasets import load_dataset

    dataset = make_filtered_dataset(local_store, count=4)
    run_caption(_context(local_store, local_settings, dataset_id=dataset.id))
    export = _download(local_store, f"datasets/{dataset.id}/captions/", tmp_path / "export")
    entries = {entry["file_name"]: entry["text"] for entry in json.loads((export / "captions.json").read_text())}
    cache = tmp_path / "hf-cache"

    # diffusers' train_text_to_image_lora.py: load_dataset("imagefolder", data_dir=...), then
    # --image_column image --caption_column text must both be in column_names.
    folder = load_dataset("imagefolder", data_dir=str(export / "imagefolder"), split="train", cache_dir=str(cache))
    assert folder.column_names == [IMAGE_COLUMN, CAPTION_COLUMN]
    assert len(folder) == len(entries)
    for row in folder:
        file_name = Path(row[IMAGE_COLUMN].filename).name
        assert row[CAPTION_COLUMN] == entries[file_name]
        assert row[IMAGE_COLUMN].size == (48, 48)

    with (export / "captions.csv").open(newline="") as handle:
        assert next(csv.reader(handle)) == [IMAGE_COLUMN, CAPTION_COLUMN]
    table = load_dataset("csv", data_files=str(export / "captions.csv"), split="train", cache_dir=str(cache))
    assert table.column_names == [IMAGE_COLUMN, CAPTION_COLUMN]
    assert sorted(zip(table[IMAGE_COLUMN], table[CAPTION_COLUMN], strict=True)) == sorted(
        (f"imagefolder/{name}", text) for name, text in entries.items()
    )
    # The `image` paths are relative to the captions folder and open as images from there.
    opened = table.map(lambda row: {IMAGE_COLUMN: str(export / row[IMAGE_COLUMN])}).cast_column(
        IMAGE_COLUMN, ImageFeature()
    )
    assert all(image.size == (48, 48) for image in opened[IMAGE_COLUMN])


class _CrashAfterFirstBatch(Exception):
    pass


def test_rerun_after_a_crash_captions_only_what_is_missing(local_store: ObjectStore, local_settings: Settings) -> None:
    from services.captioner import blip

    dataset = make_filtered_dataset(local_store, count=5)
    calls: list[int] = []
    original = blip.BlipCaptioner.caption

    def counting(self: blip.BlipCaptioner, images: list[Any], options: blip.GenerationOptions) -> list[str]:
        calls.append(len(images))
        return original(self, images, options)

    context = _context(local_store, local_settings, dataset_id=dataset.id, batch_size=2)
    reported: list[int] = []

    def crash_after_first_batch(step: int, total: int | None = None, message: str = "", **_: Any) -> None:
        reported.append(step)
        if step >= 2:
            raise _CrashAfterFirstBatch

    context.progress = crash_after_first_batch  # type: ignore[method-assign]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(blip.BlipCaptioner, "caption", counting)
        with pytest.raises(_CrashAfterFirstBatch):
            run_caption(context)
        assert calls == [2]
        assert not CaptionCatalog.for_dataset(local_store, dataset.id).exists()

        result = run_caption(_context(local_store, local_settings, dataset_id=dataset.id, batch_size=2))
        assert calls == [2, 2, 1]  # the first two images came from the partial cache
        assert result["count"] == 5 and result["captioned_now"] == 3

        # Other caption rules, same model and generation options: no BLIP call at all.
        again = run_caption(_context(local_store, local_settings, dataset_id=dataset.id, trigger="ghblstyle"))
        assert calls == [2, 2, 1] and again["captioned_now"] == 0
    assert all(
        entry.text.startswith("ghblstyle, ") for entry in CaptionCatalog.for_dataset(local_store, dataset.id).entries()
    )


def test_a_smaller_filtered_set_drops_the_stale_export_files(
    local_store: ObjectStore, local_settings: Settings
) -> None:
    dataset = make_filtered_dataset(local_store, count=4)
    run_caption(_context(local_store, local_settings, dataset_id=dataset.id))
    manifest_key = f"datasets/{dataset.id}/filtered/manifest.json"
    manifest = local_store.get_json(manifest_key)
    manifest["images"] = manifest["images"][:2]
    local_store.put_json(manifest_key, manifest)

    run_caption(_context(local_store, local_settings, dataset_id=dataset.id))
    prefix = f"datasets/{dataset.id}/captions/"
    folder_files = [key[len(prefix) :] for key in local_store.list(prefix + "imagefolder/")]
    kohya_files = [key[len(prefix) :] for key in local_store.list(prefix + "kohya/")]
    kept = [Path(image["key"]).name for image in manifest["images"]]
    assert sorted(folder_files) == sorted([*(f"imagefolder/{name}" for name in kept), "imagefolder/metadata.jsonl"])
    assert len(kohya_files) == 4  # two images, two sidecars


def test_unreadable_images_are_skipped_with_a_reason(local_store: ObjectStore, local_settings: Settings) -> None:
    dataset = make_filtered_dataset(local_store, count=3)
    broken = local_store.get_json(f"datasets/{dataset.id}/filtered/manifest.json")["images"][1]["key"]
    local_store.put_bytes(broken, b"not an image")
    result = run_caption(_context(local_store, local_settings, dataset_id=dataset.id))
    assert result["count"] == 2
    assert [item["image_key"] for item in result["skipped"]] == [broken]


def test_without_a_filtered_set_the_job_fails_with_a_clear_error(
    local_store: ObjectStore, local_settings: Settings
) -> None:
    from services.common.datasets import DatasetRepository

    dataset = DatasetRepository(local_store).create("empty")
    job = JobRepository(local_store).create("caption", {"dataset_id": dataset.id})
    finished = execute_job(job.id, local_store, local_settings)
    assert finished.state == JobState.failed
    assert "run a filter job first" in (finished.error or "")


def test_a_trigger_that_names_a_character_is_refused(local_store: ObjectStore, local_settings: Settings) -> None:
    dataset = make_filtered_dataset(local_store, count=1)
    with pytest.raises(ValueError, match="contains the scrubbed name"):
        run_caption(_context(local_store, local_settings, dataset_id=dataset.id, trigger="chihiro style"))
