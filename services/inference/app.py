"""The inference service: its own API (`/v1/generate`, `/v1/compare`) and the AUTOMATIC1111 subset.

Run it on its own (it holds the GPU):
`uvicorn --factory services.inference.app:create_app --host 0.0.0.0 --port 7860`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from PIL import Image, UnidentifiedImageError
from prometheus_client import make_asgi_app
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common.auth import RequireToken, TokenGuard
from services.common.http_input import (
    BodySizeLimitMiddleware,
    StrictJsonMiddleware,
    error_responses,
    http_error_response,
    validation_error_response,
)
from services.common.metrics import HttpMetricsMiddleware
from services.common.settings import Settings
from services.common.storage import ObjectStore, make_store
from services.inference.a1111 import PromptError, extract_lora_tags, parse_parameters
from services.inference.batcher import Batcher, QueueFullError
from services.inference.engine import Engine, LoraNotFoundError
from services.inference.generation import (
    Plan,
    comparison_grid,
    comparison_plans,
    plan_generation,
    png_bytes,
    store_png,
)
from services.inference.limits import LimitError
from services.inference.params import CompareRequest, GenerationParams, LoraRef
from services.inference.samplers import SAMPLERS
from services.inference.settings import InferenceSettings


class GenerateRequest(GenerationParams):
    seeds: list[int] | None = Field(None, min_length=1, max_length=64, description="One image per seed.")
    num_images: int = Field(1, ge=1, le=64, description="Images with random seeds when `seeds` is absent.")
    return_base64: bool = Field(False, description="Also return each PNG inline.")

    def with_seeds(self) -> GenerationParams:
        seeds = self.seeds or [random.randrange(2**32) for _ in range(self.num_images)]
        return GenerationParams.model_validate({**self.model_dump(exclude={"seeds", "lora_id"}), "seeds": seeds})


class Txt2ImgRequest(BaseModel):
    """AUTOMATIC1111's /sdapi/v1/txt2img body; fields this service does not implement are ignored."""

    model_config = ConfigDict(extra="allow")

    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 20
    cfg_scale: float = 7.0
    sampler_name: str | None = None
    sampler_index: str | None = None
    scheduler: str | None = None
    seed: int = -1
    width: int = 512
    height: int = 512
    batch_size: int = Field(1, ge=1)
    n_iter: int = Field(1, ge=1)
    enable_hr: Literal[False] = Field(False, description="Hires fix is not supported: only `false`.")

    @field_validator("enable_hr", mode="before")
    @classmethod
    def _no_hires_fix(cls, enable_hr: object) -> object:
        if enable_hr is True:
            raise ValueError("hires fix (enable_hr) is not supported")
        return enable_hr


class PngInfoRequest(BaseModel):
    image: str = Field(description="A PNG as base64, optionally a `data:image/png;base64,` URL.")


class _Service:
    """What the routes share: settings, store, engine and batcher (built at startup)."""

    def __init__(self, settings: Settings, limits: InferenceSettings, store: ObjectStore, engine: Engine) -> None:
        self.settings, self.limits, self.store, self.engine = settings, limits, store, engine
        self.batcher = Batcher(
            engine, limits.max_batch_images, limits.batch_window_ms / 1000, limits.max_queued_requests
        )

    def plan(self, params: GenerationParams) -> Plan:
        return plan_generation(params, self.engine.loras, self.limits, self.engine.model_name)

    async def render(self, plan: Plan) -> list[Image.Image]:
        future = self.batcher.submit(plan.settings, plan.specs)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.limits.request_timeout_s)
        except TimeoutError:
            future.cancel()  # dropped if its batch has not started; a running batch just finishes
            raise HTTPException(
                status.HTTP_504_GATEWAY_TIMEOUT, f"generation took longer than {self.limits.request_timeout_s:g} s"
            ) from None


def create_app(
    settings: Settings | None = None,
    limits: InferenceSettings | None = None,
    engine: Engine | None = None,
    store: ObjectStore | None = None,
) -> FastAPI:
    settings = settings or Settings()
    limits = limits or InferenceSettings()
    store = store or make_store(settings)
    service: _Service | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal service
        loaded = engine or await asyncio.to_thread(Engine.load, limits, store)
        service = _Service(settings, limits, store, loaded)
        yield
        service.batcher.close()

    app = FastAPI(title="ghibli-lora inference", version="0.1.0", lifespan=lifespan)
    # The gateway's token (GHIBLI_API_TOKEN) guards every route and /metrics; /healthz and the OpenAPI docs stay open.
    protected = [Depends(RequireToken(settings.api_token))]
    answers = error_responses(400, 401, 413, 422, 503)  # 400: a body that is not JSON; 503 until the model is loaded
    renders = {**error_responses(404, 429, 504), **answers}  # unknown LoRA, queue full, too slow
    app.add_middleware(StrictJsonMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_exception_handler(RequestValidationError, validation_error_response)
    app.add_exception_handler(StarletteHTTPException, http_error_response)
    app.add_middleware(HttpMetricsMiddleware)
    app.mount("/metrics", TokenGuard(make_asgi_app(), settings.api_token))

    def running() -> _Service:
        if service is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the model is still loading")
        return service

    @app.exception_handler(ValidationError)
    async def _invalid(request: Request, error: ValidationError) -> JSONResponse:
        detail = jsonable_encoder(error.errors(include_url=False, include_context=False, include_input=False))
        return JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(LimitError)
    @app.exception_handler(PromptError)
    async def _too_big(request: Request, error: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(LoraNotFoundError)
    async def _unknown_lora(request: Request, error: LoraNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status.HTTP_404_NOT_FOUND)

    @app.exception_handler(QueueFullError)
    async def _busy(request: Request, error: QueueFullError) -> JSONResponse:
        headers = {"Retry-After": str(round(error.retry_after_s))}
        return JSONResponse({"detail": str(error)}, status.HTTP_429_TOO_MANY_REQUESTS, headers=headers)

    @app.get("/healthz", responses=error_responses(503))
    def healthz() -> dict[str, Any]:
        current = running()
        return {
            "status": "ok",
            "model": current.engine.model_name,
            "device": str(current.engine.device),
            "queued": current.batcher.queued,
        }

    @app.post("/v1/generate", responses={200: {"content": {"image/png": {}}}, **renders}, dependencies=protected)
    async def generate(request: GenerateRequest, accept: Annotated[str, Header()] = "") -> Any:
        """Images for each seed; keys in the object store (and URLs where the store signs them).

        With `Accept: image/png` the first image is returned as the body itself.
        """
        current = running()
        plan = current.plan(request.with_seeds())
        images = await current.render(plan)
        pngs = [png_bytes(image, plan.infotext(spec)) for image, spec in zip(images, plan.specs, strict=True)]
        if "image/png" in accept and "application/json" not in accept:
            return Response(pngs[0], media_type="image/png", headers={"X-Seed": str(plan.specs[0].seed)})
        keys = await asyncio.to_thread(lambda: [store_png(current.store, data) for data in pngs])
        return {
            "images": [
                {
                    "key": key,
                    "url": current.store.url(key),
                    "seed": spec.seed,
                    **({"base64": base64.b64encode(data).decode()} if request.return_base64 else {}),
                }
                for key, spec, data in zip(keys, plan.specs, pngs, strict=True)
            ],
            "parameters": plan.infotext(plan.specs[0]),
            "loras": [{"id": lora_id, "scale": scale} for lora_id, scale in plan.settings.loras],
        }

    @app.post("/v1/compare", responses={200: {"content": {"image/png": {}}}, **renders}, dependencies=protected)
    async def compare(request: CompareRequest, accept: Annotated[str, Header()] = "") -> Any:
        """One labelled grid: rows without LoRA and with it at each scale, columns the seeds."""
        current = running()
        rows = comparison_plans(current.plan(request), request.compare_base, request.compare_scales)
        rendered = await asyncio.gather(*(current.render(row) for row in rows))
        grid = png_bytes(comparison_grid(list(zip(rows, rendered, strict=True))))
        if "image/png" in accept:
            return Response(grid, media_type="image/png")
        key = await asyncio.to_thread(store_png, current.store, grid)
        return {"key": key, "url": current.store.url(key), "rows": [row.label for row in rows]}

    @app.post("/sdapi/v1/txt2img", responses=renders, dependencies=protected)
    async def txt2img(request: Txt2ImgRequest) -> dict[str, Any]:
        current = running()
        prompt, loras = extract_lora_tags(request.prompt)
        _, negative_loras = extract_lora_tags(request.negative_prompt)
        if negative_loras:
            raise PromptError("<lora:…> tags belong in the prompt, not the negative prompt")
        first_seed = request.seed if request.seed >= 0 else random.randrange(2**32)
        count = request.batch_size * request.n_iter
        if count > current.limits.max_images:  # before the seed list is built: 5,000,000 × 2 cost 420 MB
            raise LimitError(
                f"number of images {count} exceeds the limit of {current.limits.max_images} (batch_size × n_iter)"
            )
        params = GenerationParams(
            prompt=prompt,
            negative_prompt=request.negative_prompt,
            steps=request.steps,
            guidance_scale=request.cfg_scale,
            width=request.width,
            height=request.height,
            seeds=[first_seed + index for index in range(count)],
            sampler=_sampler_name(request),
            loras=[LoraRef(id=ref.id, scale=ref.scale) for ref in loras],
        )
        plan = current.plan(params)
        images = await current.render(plan)
        infotexts = [plan.infotext(spec) for spec in plan.specs]
        encoded = [
            base64.b64encode(png_bytes(image, text)).decode() for image, text in zip(images, infotexts, strict=True)
        ]
        info = {
            "prompt": request.prompt,
            "all_prompts": [request.prompt] * count,
            "negative_prompt": request.negative_prompt,
            "all_negative_prompts": [request.negative_prompt] * count,
            "seed": first_seed,
            "all_seeds": params.seeds,
            "subseed": -1,
            "all_subseeds": [-1] * count,
            "width": params.width,
            "height": params.height,
            "sampler_name": params.sampler,
            "cfg_scale": params.guidance_scale,
            "steps": params.steps,
            "batch_size": request.batch_size,
            "sd_model_name": current.engine.model_name,
            "infotexts": infotexts,
        }
        return {"images": encoded, "parameters": request.model_dump(), "info": json.dumps(info)}

    @app.get("/sdapi/v1/sd-models", responses=answers, dependencies=protected)
    def sd_models() -> list[dict[str, Any]]:
        current = running()
        name = current.engine.model_name
        return [
            {
                "title": name,
                "model_name": name,
                "hash": None,
                "sha256": None,
                "filename": current.limits.base_model,
                "config": None,
            }
        ]

    @app.get("/sdapi/v1/samplers", responses=answers, dependencies=protected)
    def samplers() -> list[dict[str, Any]]:
        return [
            {"name": name, "aliases": [class_name], "options": extra} for name, (class_name, extra) in SAMPLERS.items()
        ]

    @app.get("/sdapi/v1/loras", responses=answers, dependencies=protected)
    def loras() -> list[dict[str, Any]]:
        return [
            {
                "name": record.name,
                "alias": record.name,
                "path": record.kohya_key,
                "metadata": {
                    "id": record.id,
                    "sha256": record.sha256,
                    "base_model": record.base_model,
                    "rank": record.rank,
                },
            }
            for record in sorted(running().engine.loras.records(), key=lambda record: record.name)
        ]

    @app.post("/sdapi/v1/refresh-loras", responses=answers, dependencies=protected)
    def refresh_loras() -> None:
        running().engine.loras.records(refresh=True)

    @app.get("/sdapi/v1/options", responses=answers, dependencies=protected)
    def get_options() -> dict[str, Any]:
        return {"sd_model_checkpoint": running().engine.model_name, "samples_format": "png"}

    @app.post("/sdapi/v1/options", responses=answers, dependencies=protected)
    def set_options(options: dict[str, Any]) -> None:
        wanted = options.get("sd_model_checkpoint")
        loaded = running().engine.model_name
        if wanted is not None and wanted != loaded:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"this service serves {loaded!r} only; switch models by restarting it with GHIBLI_INFERENCE_BASE_MODEL",
            )

    @app.get("/sdapi/v1/progress", responses=answers, dependencies=protected)
    def progress() -> dict[str, Any]:
        current = running()
        now = current.engine.progress
        fraction = now.step / now.total if now.total else 0.0
        elapsed = time.monotonic() - now.started_at if now.busy else 0.0
        return {
            "progress": fraction,
            "eta_relative": elapsed / fraction - elapsed if fraction else 0.0,
            "state": {
                "skipped": False,
                "interrupted": False,
                "job": "txt2img" if now.busy else "",
                "job_count": current.batcher.queued + int(now.busy),
                "sampling_step": now.step,
                "sampling_steps": now.total,
            },
            "current_image": None,
            "textinfo": None,
        }

    @app.post("/sdapi/v1/png-info", responses=answers, dependencies=protected)
    def png_info(request: PngInfoRequest) -> dict[str, Any]:
        encoded = request.image.split(",", 1)[1] if request.image.startswith("data:") else request.image
        try:
            with Image.open(io.BytesIO(base64.b64decode(encoded, validate=True))) as image:
                items = {key: value for key, value in image.info.items() if isinstance(value, str)}
        except (binascii.Error, UnidentifiedImageError, ValueError) as error:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"`image` is not a base64 image: {error}"
            ) from None
        except Image.DecompressionBombError as error:  # raised from the header alone; nothing was decoded
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"`image` is too large: {error}") from None
        text = items.pop("parameters", "")
        return {"info": text, "items": items, "parameters": parse_parameters(text) if text else {}}

    return app


def _sampler_name(request: Txt2ImgRequest) -> str:
    from services.inference.samplers import DEFAULT_SAMPLER, canonical_sampler

    name = request.sampler_name or request.sampler_index or DEFAULT_SAMPLER
    try:
        return canonical_sampler(name, request.scheduler)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
