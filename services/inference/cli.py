"""`ghibli-lora generate`: an `infer` job run here (embedded store) or submitted with --api; PNGs to --out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from services.common.cli_support import ApiOption, TokenOption
from services.common.client import ApiClient
from services.common.jobs import JobRepository
from services.common.runner import execute_job
from services.common.settings import Settings
from services.common.storage import make_store
from services.inference.params import InferParams
from services.inference.samplers import DEFAULT_SAMPLER


def _lora_ref(text: str) -> dict[str, object]:
    lora_id, _, scale = text.partition(":")
    try:
        return {"id": lora_id, "scale": float(scale) if scale else 1.0}
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected ID or ID:SCALE") from None


def generate(
    prompt: str,
    negative_prompt: Annotated[str, typer.Option("--negative", help="Negative prompt.")] = "",
    lora: Annotated[list[str] | None, typer.Option(help="LoRA id or name, optionally :SCALE; repeatable.")] = None,
    seed: Annotated[list[int] | None, typer.Option(help="One image per seed; repeatable.")] = None,
    steps: int = 25,
    guidance_scale: Annotated[float, typer.Option("--cfg")] = 7.0,
    width: int = 512,
    height: int = 512,
    sampler: str = DEFAULT_SAMPLER,
    compare_base: Annotated[bool, typer.Option(help="Also write a base-vs-LoRA comparison grid.")] = False,
    out: Annotated[Path, typer.Option(help="Folder for the PNGs.")] = Path("generated"),
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """Generate images with the base model and trained LoRAs."""
    try:
        params = InferParams(
            prompt=prompt,
            negative_prompt=negative_prompt,
            loras=[_lora_ref(text) for text in lora or []],
            seeds=seed or [0],
            steps=steps,
            guidance_scale=guidance_scale,
            width=width,
            height=height,
            sampler=sampler,
            compare_base=compare_base,
        ).model_dump(mode="json", exclude={"lora_id", "lora_scale"})
    except ValidationError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    if api:
        client = ApiClient(api, token)
        job = client.follow(client.submit_job("infer", params))

        def fetch(key: str) -> bytes:
            return client.http.get(f"/v1/artifacts/{key}").raise_for_status().content

    else:
        settings = Settings()
        store = make_store(settings)
        job = execute_job(JobRepository(store).create("infer", params).id, store, settings).model_dump(mode="json")
        fetch = store.get_bytes
    if job["state"] != "succeeded":
        typer.echo(f"job {job['id']} {job['state']}: {job.get('error')}", err=True)
        raise typer.Exit(1)
    result = job["result"]
    out.mkdir(parents=True, exist_ok=True)
    named = [(f"seed-{seed_}.png", key) for seed_, key in zip(result["seeds"], result["images"], strict=True)]
    named += [("grid.png", result["grid"])] + (
        [("comparison.png", result["comparison"])] if result["comparison"] else []
    )
    for name, key in named:
        (out / name).write_bytes(fetch(key))
        typer.echo(out / name)


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
