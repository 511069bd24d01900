"""What every `ghibli-lora` command that can talk to a running gateway shares: its options and
the submit-then-follow path."""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn

import typer

ApiOption = Annotated[
    str | None, typer.Option("--api", help="Base URL of a running gateway API: submit there instead of running here.")
]
TokenOption = Annotated[str | None, typer.Option("--token", envvar="GHIBLI_API_TOKEN", help="Bearer token.")]
DatasetOption = Annotated[str | None, typer.Option("--dataset", help="Dataset id (with --api).")]


def run_remote_job(api: str, token: str | None, job_type: str, params: dict[str, Any]) -> NoReturn:
    """Submit the job to the gateway, draw its progress until it ends, print its result; exit 0 if it succeeded."""
    from services.common.client import ApiClient

    client = ApiClient(api, token)
    job_id = client.submit_job(job_type, params)
    typer.echo(f"{job_type} job {job_id}")
    final = client.follow(job_id)
    typer.echo(json.dumps(final.get("result") or {"error": final.get("error")}, indent=2))
    raise typer.Exit(0 if final["state"] == "succeeded" else 1)
