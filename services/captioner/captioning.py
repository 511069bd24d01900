"""Caption a set of images resumably and turn BLIP's text into training captions.

BLIP's raw output is cached per image (by file name, which is the image's sha256) in
`raw/<fingerprint>.json` beside the exports, saved after every batch: a job that crashed, or one
rerun with other caption rules, only sends images without a cached caption to BLIP. The
fingerprint covers the model and generation options, so changing those captions afresh.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from PIL import Image, UnidentifiedImageError

from services.captioner.catalog import CaptionCatalog, CaptionRules
from services.captioner.exports import CaptionEntry
from services.captioner.params import CaptionParams
from services.captioner.scrub import (
    GHIBLI_CHARACTERS,
    GHIBLI_FILMS,
    NameScrubber,
    clean_blip_caption,
    compose_caption,
)
from services.common.datasets import Character
from services.common.storage import ObjectNotFoundError

if TYPE_CHECKING:
    from services.captioner.blip import BlipCaptioner, GenerationOptions

log = logging.getLogger(__name__)


class ProgressFn(Protocol):
    def __call__(self, done: int, total: int, message: str) -> None: ...


@dataclass
class CaptionOutcome:
    entries: list[CaptionEntry]
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"image_key", "reason"}
    captioned_now: int = 0  # images sent to BLIP by this run (the rest came from the cache)
    cache_key: str = ""


def generation_options(params: CaptionParams) -> GenerationOptions:
    from services.captioner.blip import GenerationOptions

    return GenerationOptions(
        num_beams=params.num_beams,
        min_new_tokens=params.min_new_tokens,
        max_new_tokens=params.max_new_tokens,
        repetition_penalty=params.repetition_penalty,
        prompt=params.prompt,
    )


def cache_fingerprint(model_id: str, options: GenerationOptions) -> str:
    payload = json.dumps({"model_id": model_id, **asdict(options)}, sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def describe(raw: str, params: CaptionParams, scrubber: NameScrubber) -> str:
    """BLIP's text → the training caption: artefacts out, names out, trigger and suffix on."""
    description = scrubber.scrub(clean_blip_caption(raw, params.prompt, params.keep_prompt)) or params.subject
    return compose_caption(description, params.trigger, params.style_suffix)


def check_decorations(params: CaptionParams, scrubber: NameScrubber) -> None:
    """A trigger or suffix that names a character would put the name back into every caption."""
    for label, text in (("trigger", params.trigger), ("style_suffix", params.style_suffix)):
        if text and (names := scrubber.names_in(text)):
            raise ValueError(f"{label} {text!r} contains the scrubbed name(s) {', '.join(names)}")


def caption_set(
    catalog: CaptionCatalog,
    items: list[CaptionEntry],
    read_bytes: Callable[[CaptionEntry], bytes],
    load_captioner: Callable[[], BlipCaptioner],
    model_id: str,
    params: CaptionParams,
    batch_size: int,
    scrubber: NameScrubber,
    progress: ProgressFn,
) -> CaptionOutcome:
    """Caption every item not yet in the cache, then build the final entries in `items` order."""
    from services.captioner.blip import caption_in_batches

    options = generation_options(params)
    cache_key = catalog.key(f"raw/{cache_fingerprint(model_id, options)}.json")
    try:
        raw: dict[str, str] = catalog.store.get_json(cache_key)["captions"]
    except ObjectNotFoundError:
        raw = {}
    skipped: dict[str, str] = {}
    pending = [item for item in items if item.file_name not in raw]
    done = len(items) - len(pending)
    progress(done, len(items), f"{done} captions cached, {len(pending)} to caption")

    def load_image(item: CaptionEntry) -> Image.Image | None:
        try:
            with Image.open(io.BytesIO(read_bytes(item))) as image:
                return image.convert("RGB")
        except (ObjectNotFoundError, FileNotFoundError, UnidentifiedImageError, OSError) as error:
            log.warning("cannot caption %s: %s", item.image_key, error)
            skipped[item.file_name] = f"{type(error).__name__}: {error}"
            return None

    def on_batch(batch: list[CaptionEntry], captions: list[str]) -> None:
        nonlocal done
        raw.update({item.file_name: caption for item, caption in zip(batch, captions, strict=True)})
        catalog.store.put_json(cache_key, {"model_id": model_id, "options": asdict(options), "captions": raw})
        done += len(batch)
        progress(done + len(skipped), len(items), f"captioned {done}/{len(items)}")

    if pending:
        caption_in_batches(load_captioner(), pending, load_image, batch_size, options, on_batch)
    entries = [
        item.model_copy(update={"text": describe(raw[item.file_name], params, scrubber)})
        for item in items
        if item.file_name in raw
    ]
    return CaptionOutcome(
        entries=entries,
        skipped=[
            {"image_key": item.image_key, "reason": skipped[item.file_name]}
            for item in items
            if item.file_name in skipped
        ],
        captioned_now=len(pending) - len(skipped),
        cache_key=cache_key,
    )


def caption_rules(
    characters: Iterable[Character],
    manifest_images: Iterable[dict[str, Any]],
    extra_names: Iterable[str],
    subject: str,
) -> CaptionRules:
    """Everything to scrub: the dataset's characters, aliases and films, the manifest's, the Ghibli list, extras."""
    names, titles = set(GHIBLI_CHARACTERS) | set(extra_names), set(GHIBLI_FILMS)
    for character in characters:
        names.update([character.character, *character.aliases])
        titles.add(character.movie)
    for image in manifest_images:
        names.update(filter(None, [image.get("character")]))
        titles.update(filter(None, [image.get("movie")]))
    return CaptionRules(characters=sorted(names), titles=sorted(titles), subject=subject)
