"""BLIP captioning in batches: fp16/bf16 on CUDA, fp32 on CPU."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch

if TYPE_CHECKING:
    from PIL import Image
    from transformers import BlipForConditionalGeneration, BlipProcessor

log = logging.getLogger(__name__)
Item = TypeVar("Item")


@dataclass(frozen=True)
class GenerationOptions:
    num_beams: int = 3
    min_new_tokens: int = 5
    max_new_tokens: int = 40
    repetition_penalty: float = 1.3
    prompt: str | None = None


def resolve_device(device: str = "auto", precision: str = "auto") -> tuple[torch.device, torch.dtype]:
    """The device and dtype to run on; half precision is only used where CUDA runs it."""
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("GHIBLI_CAPTIONER_DEVICE=cuda but no CUDA device is available")
    chosen = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
    if chosen.type == "cpu":
        if precision in ("fp16", "bf16"):
            log.warning(
                "precision %s asked for on CPU; using fp32 (half precision on CPU is slow or unsupported)", precision
            )
        return chosen, torch.float32
    dtypes = {"auto": torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    return chosen, dtypes[precision]


class BlipCaptioner:
    """A loaded BLIP model and processor that caption a list of images in one forward pass."""

    def __init__(
        self, model: BlipForConditionalGeneration, processor: BlipProcessor, device: torch.device, dtype: torch.dtype
    ) -> None:
        self.model = model.to(device=device, dtype=dtype).eval()
        self.processor = processor
        self.device, self.dtype = device, dtype

    @classmethod
    def load(
        cls, model_id: str, device: str = "auto", precision: str = "auto", cache_dir: Path | None = None
    ) -> BlipCaptioner:
        """From a hub id (downloaded once into the HF cache) or a local folder."""
        from transformers import BlipForConditionalGeneration, BlipProcessor

        torch_device, dtype = resolve_device(device, precision)
        try:
            processor = BlipProcessor.from_pretrained(model_id, cache_dir=cache_dir)
            model = BlipForConditionalGeneration.from_pretrained(model_id, cache_dir=cache_dir, dtype=dtype)
        except (OSError, ValueError) as error:  # missing folder, bad hub id, no network and no cache
            raise RuntimeError(f"cannot load BLIP model {model_id!r} (GHIBLI_CAPTIONER_MODEL_ID): {error}") from error
        return cls(model, processor, torch_device, dtype)

    @torch.inference_mode()
    def caption(self, images: Sequence[Image.Image], options: GenerationOptions) -> list[str]:
        if not images:
            return []
        prompts = [options.prompt] * len(images) if options.prompt else None
        inputs = self.processor(images=list(images), text=prompts, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.dtype)
        # Every prompt in a batch is the same text, so no padding and no attention mask are needed.
        input_ids = inputs["input_ids"].to(self.device) if prompts else None
        generated = self.model.generate(
            pixel_values=pixel_values,
            input_ids=input_ids,
            num_beams=options.num_beams,
            min_new_tokens=options.min_new_tokens,
            max_new_tokens=options.max_new_tokens,
            repetition_penalty=options.repetition_penalty,
        )
        return [text.strip() for text in self.processor.batch_decode(generated, skip_special_tokens=True)]


@lru_cache(maxsize=1)
def cached_captioner(model_id: str, device: str, precision: str, cache_dir: Path | None) -> BlipCaptioner:
    """A worker keeps its last model between jobs instead of reloading ~1.8 GB each time."""
    return BlipCaptioner.load(model_id, device, precision, cache_dir)


def caption_in_batches(
    captioner: BlipCaptioner,
    items: Sequence[Item],
    load_image: Callable[[Item], Image.Image | None],
    batch_size: int,
    options: GenerationOptions,
    on_batch: Callable[[list[Item], list[str]], None],
) -> None:
    """Caption `items` `batch_size` at a time; `on_batch` gets each batch's items and captions.

    `load_image` returns None for an item it could not read; that item is left out of the batch.
    """
    for start in range(0, len(items), batch_size):
        loaded = [(item, load_image(item)) for item in items[start : start + batch_size]]
        usable = [(item, image) for item, image in loaded if image is not None]
        captions = captioner.caption([image for _, image in usable], options)
        on_batch([item for item, _ in usable], captions)
