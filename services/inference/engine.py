"""The loaded SD1.5 pipeline with its resident LoRA adapters and schedulers; renders batches of images.

One `Engine` owns one `StableDiffusionPipeline`. LoRAs are peft adapters loaded next to the base
weights (never a reload of the base): switching is `set_adapters` on adapters already resident,
loading a new one costs one safetensors read, and the least recently used is deleted beyond
`resident_loras`. Every image gets its own CPU generator seeded from its seed, so an image depends
on its seed and settings only, not on which other requests shared its batch or on the device.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from services.common.loras import LoraRecord, LoraRepository
from services.common.metrics import IMAGES_PROCESSED
from services.common.storage import InvalidKeyError, ObjectNotFoundError, ObjectStore
from services.inference.samplers import SAMPLERS
from services.inference.settings import InferenceSettings

log = logging.getLogger(__name__)


class LoraNotFoundError(LookupError):
    """No LoRA in the registry has this id or name."""


@dataclass(frozen=True)
class RenderSettings:
    """What must be equal for images to share one pipeline call."""

    steps: int
    guidance_scale: float
    width: int
    height: int
    sampler: str
    loras: tuple[tuple[str, float], ...] = ()  # (registry id, scale)


@dataclass(frozen=True)
class ImageSpec:
    prompt: str
    negative_prompt: str
    seed: int


@dataclass
class RenderProgress:
    """The call in flight, for A1111's /progress."""

    step: int = 0
    total: int = 0
    images: int = 0
    started_at: float = 0.0

    @property
    def busy(self) -> bool:
        return self.total > 0


class LoraCache:
    """Registry lookups (id or name) and the LoRA weight files, downloaded once to a local folder."""

    record_ttl_s = 30.0  # a newly trained LoRA shows up by name within this long

    def __init__(self, store: ObjectStore, cache_dir: Path) -> None:
        self.repository = LoraRepository(store)
        self.store = store
        self.cache_dir = cache_dir
        self._records: dict[str, LoraRecord] = {}
        self._listed_at = float("-inf")
        self._lock = threading.Lock()

    def records(self, refresh: bool = False) -> list[LoraRecord]:
        with self._lock:
            if refresh or time.monotonic() - self._listed_at > self.record_ttl_s:
                self._records = {record.id: record for record in self.repository.list()}
                self._listed_at = time.monotonic()
            return list(self._records.values())

    def resolve(self, id_or_name: str) -> LoraRecord:
        """By id, else the newest of that name; re-lists the registry once before giving up."""
        for refresh in (False, True):
            matches = [record for record in self.records(refresh) if id_or_name in (record.id, record.name)]
            if matches:
                return max(matches, key=lambda record: (record.id == id_or_name, record.created_at))
        raise LoraNotFoundError(f"no LoRA {id_or_name!r} in the registry")

    def weights_file(self, record: LoraRecord) -> Path:
        """The diffusers file when stored, else the kohya one (diffusers converts kohya keys on load)."""
        for key in (record.diffusers_key, record.kohya_key):
            path = self.cache_dir / f"{record.id}-{record.sha256[:16]}" / Path(key).name
            if path.exists():
                return path
            try:
                return self.store.download(key, path)
            except (ObjectNotFoundError, InvalidKeyError):
                continue
        raise LoraNotFoundError(f"LoRA {record.id!r} has no weights at {record.diffusers_key} or {record.kohya_key}")


def pick_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


class Engine:
    def __init__(self, pipeline: Any, loras: LoraCache, model_name: str, resident_loras: int = 8) -> None:
        self.pipeline = pipeline
        self.loras = loras
        self.model_name = model_name
        self.resident_loras = resident_loras
        self.progress = RenderProgress()
        self.render_calls = 0
        self._lock = threading.Lock()
        self._scheduler_config = pipeline.scheduler.config
        self._schedulers: dict[str, Any] = {}
        self._adapters: OrderedDict[str, str] = OrderedDict()  # registry id → adapter name, oldest first
        self._active: tuple[tuple[str, float], ...] = ()

    @classmethod
    def load(cls, settings: InferenceSettings, store: ObjectStore) -> Engine:
        from diffusers import StableDiffusionPipeline

        device = pick_device(settings.device)
        dtype = torch.float16 if device.type == "cuda" and settings.fp16 else torch.float32
        pipeline = StableDiffusionPipeline.from_pretrained(
            settings.base_model, dtype=dtype, safety_checker=None, requires_safety_checker=False
        ).to(device)
        pipeline.set_progress_bar_config(disable=True)
        if settings.compile_unet and device.type == "cuda":
            pipeline.unet = torch.compile(pipeline.unet, mode="max-autotune-no-cudagraphs")
        return cls(
            pipeline,
            LoraCache(store, settings.lora_cache_dir),
            settings.display_model_name,
            settings.resident_loras,
        )

    @property
    def device(self) -> torch.device:
        return self.pipeline.device

    def render(
        self,
        settings: RenderSettings,
        specs: list[ImageSpec],
        on_step: Callable[[int, int], None] | None = None,
    ) -> list[Image.Image]:
        """One pipeline call for all `specs` (they share `settings`)."""
        with self._lock:
            self.use_loras(settings.loras)
            self.pipeline.scheduler = self.scheduler_for(settings.sampler)
            generators = [torch.Generator("cpu").manual_seed(spec.seed) for spec in specs]
            self.progress = RenderProgress(0, settings.steps, len(specs), time.monotonic())

            def step_done(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
                self.progress.step = step + 1
                if on_step is not None:
                    on_step(step + 1, settings.steps)
                return tensors

            try:
                with torch.inference_mode():
                    output = self.pipeline(
                        prompt=[spec.prompt for spec in specs],
                        negative_prompt=[spec.negative_prompt for spec in specs],
                        num_inference_steps=settings.steps,
                        guidance_scale=settings.guidance_scale,
                        width=settings.width,
                        height=settings.height,
                        generator=generators,
                        callback_on_step_end=step_done,
                        output_type="pil",
                    )
            finally:
                self.progress = RenderProgress()
                self.render_calls += 1
            IMAGES_PROCESSED.labels("inference").inc(len(output.images))
            return list(output.images)

    def use_loras(self, loras: tuple[tuple[str, float], ...]) -> None:
        """Make exactly these (registry id, scale) adapters active; the base model is never reloaded."""
        if loras == self._active:
            return
        if not loras:
            if self._adapters:
                self.pipeline.disable_lora()
        else:
            names = [self._adapter(lora_id, keep={lora_id for lora_id, _ in loras}) for lora_id, _ in loras]
            self.pipeline.enable_lora()
            self.pipeline.set_adapters(names, adapter_weights=[scale for _, scale in loras])
        self._active = loras

    def _adapter(self, lora_id: str, keep: set[str]) -> str:
        if lora_id in self._adapters:
            self._adapters.move_to_end(lora_id)
            return self._adapters[lora_id]
        while len(self._adapters) >= self.resident_loras:
            evicted = next((resident for resident in self._adapters if resident not in keep), None)
            if evicted is None:
                break
            self.pipeline.delete_adapters(self._adapters.pop(evicted))
        from safetensors.torch import load_file

        record = self.loras.resolve(lora_id)
        name = "lora_" + re.sub(r"\W", "_", record.id)
        started = time.perf_counter()
        self.pipeline.load_lora_weights(load_file(self.loras.weights_file(record)), adapter_name=name)
        log.info("loaded LoRA %s as adapter %s in %.0f ms", record.id, name, 1000 * (time.perf_counter() - started))
        self._adapters[lora_id] = name
        return name

    def scheduler_for(self, sampler: str) -> Any:
        if sampler not in self._schedulers:
            import diffusers

            class_name, extra = SAMPLERS[sampler]
            self._schedulers[sampler] = getattr(diffusers, class_name).from_config(self._scheduler_config, **extra)
        return self._schedulers[sampler]
