"""The `infer` job: render the prompt per seed (optionally a base-vs-LoRA comparison) into the store."""

from __future__ import annotations

import threading
from typing import Any

from PIL import Image

from services.common.jobs import JobContext
from services.common.settings import Settings
from services.common.storage import ObjectStore
from services.inference.engine import Engine
from services.inference.generation import (
    Plan,
    comparison_grid,
    comparison_plans,
    labelled_grid,
    plan_generation,
    png_bytes,
    store_png,
)
from services.inference.params import InferParams
from services.inference.settings import InferenceSettings, get_inference_settings

_engines: dict[tuple[str, ...], Engine] = {}
_engines_lock = threading.Lock()


def shared_engine(settings: InferenceSettings, platform: Settings, store: ObjectStore) -> Engine:
    """One loaded pipeline per worker process (and store): loading SD1.5 takes far longer than a sample job."""
    key = (
        settings.base_model,
        settings.device,
        str(settings.fp16),
        str(platform.s3_endpoint),
        platform.s3_bucket,
        str(platform.data_dir),
    )
    with _engines_lock:
        if key not in _engines:
            _engines[key] = Engine.load(settings, store)
        return _engines[key]


def run_infer(ctx: JobContext) -> dict[str, Any]:
    params: InferParams = ctx.params  # type: ignore[assignment]
    settings = get_inference_settings()
    engine = shared_engine(settings, ctx.settings, ctx.store)
    plan = plan_generation(params, engine.loras, settings, engine.model_name)
    compare = params.compare_base or bool(params.compare_scales)
    rows = comparison_plans(plan, params.compare_base, params.compare_scales) if compare else [plan]
    total_steps = len(rows) * plan.settings.steps * -(-len(plan.specs) // settings.max_batch_images)
    done_steps = 0

    def render(row: Plan) -> list[Image.Image]:
        nonlocal done_steps
        images: list[Image.Image] = []
        for first in range(0, len(row.specs), settings.max_batch_images):
            images += engine.render(
                row.settings,
                row.specs[first : first + settings.max_batch_images],
                on_step=lambda step, _, offset=done_steps: ctx.progress(
                    offset + step, total_steps, f"rendering {row.label}"
                ),
            )
            done_steps += row.settings.steps
        return images

    rendered = [(row, render(row)) for row in rows]
    images = next(images for row, images in rendered if row.settings == plan.settings)
    keys = [
        store_png(ctx.store, png_bytes(image, plan.infotext(spec)))
        for image, spec in zip(images, plan.specs, strict=True)
    ]
    seed_labels = [f"seed {spec.seed}" for spec in plan.specs]
    grid_key = store_png(ctx.store, png_bytes(labelled_grid([(plan.label, images)], seed_labels)))
    comparison_key = store_png(ctx.store, png_bytes(comparison_grid(rendered))) if compare else None
    ctx.progress(total_steps, total_steps, f"{len(keys)} images", force=True)
    return {
        "images": keys,
        "grid": grid_key,
        "comparison": comparison_key,
        "seeds": [spec.seed for spec in plan.specs],
        "loras": [{"id": lora_id, "scale": scale} for lora_id, scale in plan.settings.loras],
    }
