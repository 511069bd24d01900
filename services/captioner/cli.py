"""`ghibli-lora caption`: a local folder in, captions and exports out; or a job on a server."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from tqdm import tqdm

from services.captioner.captioning import caption_rules, caption_set, check_decorations
from services.captioner.catalog import CaptionCatalog
from services.captioner.exports import CaptionEntry
from services.captioner.params import CaptionParams
from services.captioner.settings import CaptionerSettings
from services.common.cli_support import ApiOption, DatasetOption, TokenOption, run_remote_job
from services.common.storage import LocalStore, sha256_hex

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def local_items(folder: Path) -> tuple[list[CaptionEntry], list[dict[str, Any]]]:
    """The images to caption and their manifest rows.

    A folder the `filter` command wrote is read through its manifest.json (characters, films);
    any other folder contributes every image file, a sub-folder's name being the character.
    """
    manifest = folder / "manifest.json"
    if manifest.is_file():
        images = json.loads(manifest.read_text())["images"]
    else:
        images = []
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
            relative = path.relative_to(folder).as_posix()
            character = path.parent.name.replace("_", " ") if path.parent != folder else None
            images.append({"key": relative, "sha256": sha256_hex(path.read_bytes()), "character": character})
    items = [
        CaptionEntry(
            # Content-addressed names: unique, and safe in every export whatever the source file was called.
            file_name=f"{image['sha256']}{PurePosixPath(image['key']).suffix.lower()}",
            image_key=image["key"],
            text="",
            source_sha256=image.get("source_sha256"),
            character=image.get("character"),
            movie=image.get("movie"),
        )
        for image in images
    ]
    return items, images


def caption_folder(source: Path, output: Path, params: CaptionParams, settings: CaptionerSettings) -> dict[str, Any]:
    """Caption `source` into `output` (captions.json/csv/txt, imagefolder/, kohya/); resumable."""
    from services.captioner.blip import BlipCaptioner

    items, images = local_items(source)
    rules = caption_rules([], images, [*settings.extra_names, *params.extra_names], params.subject)
    scrubber = rules.scrubber()
    check_decorations(params, scrubber)
    catalog = CaptionCatalog(LocalStore(output), "")

    def read_bytes(item: CaptionEntry) -> bytes:
        return (source / item.image_key).read_bytes()

    with tqdm(total=len(items), unit="image", desc="caption") as bar:

        def progress(done: int, total: int, message: str) -> None:
            bar.n = done
            bar.set_postfix_str(message, refresh=True)

        outcome = caption_set(
            catalog,
            items,
            read_bytes,
            lambda: BlipCaptioner.load(settings.model_id, settings.device, settings.precision, settings.cache_dir),
            settings.model_id,
            params,
            params.batch_size or settings.batch_size,
            scrubber,
            progress,
        )
    published = catalog.publish(outcome.entries, rules, read_bytes)
    return {
        **{name: str(output / key) for name, key in published.keys.items()},
        "count": len(outcome.entries),
        "skipped": outcome.skipped,
    }


def register(app: typer.Typer) -> None:
    @app.command("caption")
    def caption_command(
        source: Annotated[Path | None, typer.Argument(help="Folder of images, or a `filter` output folder.")] = None,
        output: Annotated[Path | None, typer.Argument(help="Folder for captions and exports.")] = None,
        api: ApiOption = None,
        dataset: DatasetOption = None,
        token: TokenOption = None,
        trigger: Annotated[str | None, typer.Option(help="Token put first in every caption.")] = None,
        style_suffix: Annotated[
            str | None, typer.Option(help="Appended to every caption, e.g. 'in Ghibli style'.")
        ] = None,
        prompt: Annotated[str | None, typer.Option(help="Conditional prefix BLIP continues.")] = None,
        keep_prompt: bool = False,
        name: Annotated[list[str] | None, typer.Option("--name", help="A name to scrub (repeatable).")] = None,
        subject: Annotated[str, typer.Option(help="What a scrubbed character name becomes.")] = "a character",
        batch_size: Annotated[int | None, typer.Option(help="Images per forward pass.")] = None,
        num_beams: int = 3,
        min_new_tokens: int = 5,
        max_new_tokens: int = 40,
        repetition_penalty: float = 1.3,
        model: Annotated[str | None, typer.Option(help="Hub id or folder (default GHIBLI_CAPTIONER_MODEL_ID).")] = None,
        discard_hand_edits: Annotated[
            bool, typer.Option(help="With --api: replace captions people edited with new ones (kept by default).")
        ] = False,
    ) -> None:
        """BLIP captions without character names or titles, exported for diffusers and kohya."""
        try:
            params = CaptionParams(
                dataset_id=dataset or "local",
                batch_size=batch_size,
                num_beams=num_beams,
                min_new_tokens=min_new_tokens,
                max_new_tokens=max_new_tokens,
                repetition_penalty=repetition_penalty,
                prompt=prompt,
                keep_prompt=keep_prompt,
                trigger=trigger,
                style_suffix=style_suffix,
                subject=subject,
                extra_names=name or [],
                discard_hand_edits=discard_hand_edits,
            )
        except ValidationError as error:
            typer.echo(str(error), err=True)
            raise typer.Exit(2) from None
        if api:
            if not dataset:
                typer.echo("--api needs --dataset ID", err=True)
                raise typer.Exit(2)
            run_remote_job(api, token, "caption", params.model_dump(mode="json"))
        if source is None or output is None or not source.is_dir():
            typer.echo("give SOURCE (an existing folder) and OUTPUT, or --api URL --dataset ID", err=True)
            raise typer.Exit(2)
        settings = CaptionerSettings()
        if model:
            settings = settings.model_copy(update={"model_id": model})
        try:
            result = caption_folder(source, output, params, settings)
        except (ValueError, RuntimeError) as error:
            typer.echo(str(error), err=True)
            raise typer.Exit(1) from None
        typer.echo(json.dumps(result, indent=2))
