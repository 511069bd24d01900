"""The `caption` job: the filtered set → BLIP captions without names → exports under captions/."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from services.captioner.captioning import caption_rules, caption_set, check_decorations
from services.captioner.catalog import CaptionCatalog
from services.captioner.exports import CaptionEntry
from services.captioner.params import CaptionParams
from services.captioner.settings import CaptionerSettings
from services.common.datasets import DatasetRepository
from services.common.jobs import JobContext
from services.common.metrics import IMAGES_PROCESSED
from services.common.storage import ObjectNotFoundError

if TYPE_CHECKING:
    from services.captioner.blip import BlipCaptioner


def manifest_key(dataset_id: str) -> str:
    return f"datasets/{dataset_id}/filtered/manifest.json"


def run_caption(ctx: JobContext) -> dict[str, Any]:
    params: CaptionParams = ctx.params  # type: ignore[assignment]
    settings = CaptionerSettings()
    store = ctx.store
    try:
        manifest = store.get_json(manifest_key(params.dataset_id))
        dataset = DatasetRepository(store).get(params.dataset_id)
    except ObjectNotFoundError as missing:
        raise ValueError(f"dataset {params.dataset_id} has no {missing.args[0]}: run a filter job first") from None

    rules = caption_rules(
        dataset.characters, manifest["images"], [*settings.extra_names, *params.extra_names], params.subject
    )
    scrubber = rules.scrubber()
    check_decorations(params, scrubber)
    # The clean key's name is the image's sha256: unique, stable across reruns, safe in every export.
    items = list(
        {
            image["key"]: CaptionEntry(
                file_name=PurePosixPath(image["key"]).name,
                image_key=image["key"],
                text="",
                source_sha256=image.get("source_sha256"),
                character=image.get("character"),
                movie=image.get("movie"),
            )
            for image in manifest["images"]
        }.values()
    )

    def load_captioner() -> BlipCaptioner:  # imports torch only when something is left to caption
        from services.captioner.blip import cached_captioner

        return cached_captioner(settings.model_id, settings.device, settings.precision, settings.cache_dir)

    catalog = CaptionCatalog.for_dataset(store, params.dataset_id)
    outcome = caption_set(
        catalog,
        items,
        lambda item: store.get_bytes(item.image_key),
        load_captioner,
        settings.model_id,
        params,
        params.batch_size or settings.batch_size,
        scrubber,
        lambda done, total, message: ctx.progress(done, total, message),
    )
    ctx.progress(len(items), len(items) + 1, "writing exports", force=True)
    discarded = catalog.discard_hand_edits() if params.discard_hand_edits else 0
    published = catalog.publish(outcome.entries, rules, lambda entry: store.get_bytes(entry.image_key))
    IMAGES_PROCESSED.labels("caption").inc(outcome.captioned_now)
    return {
        **published.keys,
        "hand_edits_kept": published.hand_edits,
        "hand_edits_discarded": discarded,
        "count": len(outcome.entries),
        "skipped": outcome.skipped,
        "captioned_now": outcome.captioned_now,
        "raw_cache": outcome.cache_key,
        "model_id": settings.model_id,
        "trigger": params.trigger,
        "style_suffix": params.style_suffix,
    }
