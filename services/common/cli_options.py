"""Options every `ghibli-lora` command that can talk to a running gateway shares."""

from __future__ import annotations

from typing import Annotated

import typer

ApiOption = Annotated[
    str | None, typer.Option("--api", help="Base URL of a running gateway API: submit there instead of running here.")
]
TokenOption = Annotated[str | None, typer.Option("--token", envvar="GHIBLI_API_TOKEN", help="Bearer token.")]
DatasetOption = Annotated[str | None, typer.Option("--dataset", help="Dataset id (with --api).")]
