"""From request params to render calls and stored PNGs; shared by the HTTP app and the `infer` job."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageDraw, PngImagePlugin

from services.common.loras import LoraRecord
from services.common.storage import ObjectStore
from services.inference.a1111 import format_parameters
from services.inference.engine import ImageSpec, LoraCache, RenderSettings
from services.inference.limits import check_limits
from services.inference.params import GenerationParams
from services.inference.settings import InferenceSettings

GENERATED_NAMESPACE = "images/generated"


@dataclass(frozen=True)
class Plan:
    """The render settings, one spec per seed, and what the A1111 infotext needs."""

    settings: RenderSettings
    specs: list[ImageSpec]
    records: list[LoraRecord]
    model_name: str

    def with_lora_scale(self, scale: float | None) -> Plan:
        """The same images with every LoRA at `scale`, or with no LoRA when None (comparison rows)."""
        loras = () if scale is None else tuple((lora_id, scale) for lora_id, _ in self.settings.loras)
        records = [] if scale is None else self.records
        settings = RenderSettings(**{**self.settings.__dict__, "loras": loras})
        return Plan(settings, self.specs, records, self.model_name)

    @property
    def label(self) -> str:
        scales = dict(self.settings.loras)
        return ", ".join(f"{record.name} x{scales[record.id]:g}" for record in self.records) or "no LoRA"

    def infotext(self, spec: ImageSpec) -> str:
        """A1111's `parameters` text; the prompt keeps its `<lora:…>` tags so pasting it reproduces the image."""
        scales = dict(self.settings.loras)
        tags = "".join(f" <lora:{record.name}:{scales[record.id]:g}>" for record in self.records)
        lora_hashes = ", ".join(f"{record.name}: {record.sha256[:12]}" for record in self.records)
        return format_parameters(
            spec.prompt + tags,
            spec.negative_prompt,
            {
                "Steps": self.settings.steps,
                "Sampler": self.settings.sampler,
                "CFG scale": f"{self.settings.guidance_scale:g}",
                "Seed": spec.seed,
                "Size": f"{self.settings.width}x{self.settings.height}",
                "Model": self.model_name,
                "Lora hashes": lora_hashes or None,
                "Version": "ghibli-lora",
            },
        )


def plan_generation(params: GenerationParams, loras: LoraCache, limits: InferenceSettings, model_name: str) -> Plan:
    """Check limits and resolve LoRA names to registry records (LoraNotFoundError when unknown)."""
    check_limits(params, limits)
    records = [loras.resolve(ref.id) for ref in params.loras]
    settings = RenderSettings(
        steps=params.steps,
        guidance_scale=params.guidance_scale,
        width=params.width,
        height=params.height,
        sampler=params.sampler,
        loras=tuple((record.id, ref.scale) for record, ref in zip(records, params.loras, strict=True)),
    )
    specs = [ImageSpec(params.prompt, params.negative_prompt, seed) for seed in params.seeds]
    return Plan(settings, specs, records, model_name)


def comparison_plans(plan: Plan, compare_base: bool, scales: list[float]) -> list[Plan]:
    """The comparison grid's rows: optionally no LoRA, then the LoRAs as requested or at each of `scales`."""
    rows = [plan.with_lora_scale(None)] if compare_base else []
    rows += [plan.with_lora_scale(scale) for scale in scales] if scales else [plan]
    return list({row.settings: row for row in rows}.values())


def comparison_grid(rows: list[tuple[Plan, list[Image.Image]]]) -> Image.Image:
    seeds = [f"seed {spec.seed}" for spec in rows[0][0].specs]
    return labelled_grid([(plan.label, images) for plan, images in rows], seeds)


def png_bytes(image: Image.Image, parameters: str | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    if parameters:
        info.add_text("parameters", parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def store_png(store: ObjectStore, data: bytes) -> str:
    """Content-addressed, so storing the same image twice (a re-run job) writes nothing new."""
    key, _ = store.put_content_addressed(GENERATED_NAMESPACE, data, "png", "image/png")
    return key


def labelled_grid(rows: list[tuple[str, list[Image.Image]]], column_labels: list[str]) -> Image.Image:
    """Rows of equally sized images, a label left of each row and above each column."""
    cell_w, cell_h = rows[0][1][0].size
    label_w = max(80, 7 * max(len(label) for label, _ in rows) + 12)
    header_h = 22
    grid = Image.new("RGB", (label_w + cell_w * len(column_labels), header_h + cell_h * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for column, label in enumerate(column_labels):
        draw.text((label_w + column * cell_w + 4, 5), label, fill="black")
    for row, (label, images) in enumerate(rows):
        top = header_h + row * cell_h
        draw.text((6, top + cell_h // 2 - 6), label, fill="black")
        for column, image in enumerate(images):
            grid.paste(image, (label_w + column * cell_w, top))
    return grid
