"""The `ghibli-lora` command. Each service adds its own commands through `register(app)`."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
from typing import Annotated

import typer

from services.common import registry
from services.common.cli_support import ApiOption, TokenOption
from services.common.client import ApiClient
from services.common.jobs import JobRepository, JobState
from services.common.settings import Settings
from services.common.storage import make_store

app = typer.Typer(help="Crawl, filter, caption, train and serve Studio Ghibli-style SD1.5 LoRAs.", no_args_is_help=True)
jobs_app = typer.Typer(help="List, show and cancel jobs (embedded store, or a running API with --api).")
app.add_typer(jobs_app, name="jobs")


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Interface to bind; keep 127.0.0.1 unless behind a proxy.")] = "127.0.0.1",
    port: int = 8000,
) -> None:
    """Run the API and the workers on this machine.

    Without GHIBLI_REDIS_URL the jobs run inside the API process (embedded mode: no Redis, no
    Docker). With it, one Celery worker per queue is started beside the API.
    """
    import uvicorn

    settings = Settings()
    workers: list[subprocess.Popen[bytes]] = []
    if not settings.embedded:
        for queue in registry.QUEUES:
            command = registry.worker_command(queue, f"{queue}@%h")
            workers.append(subprocess.Popen(command, start_new_session=True))
    typer.echo(f"ghibli-lora API on http://{host}:{port}/docs ({'embedded' if settings.embedded else 'celery'} jobs)")
    try:
        uvicorn.run("services.api.app:create_app", factory=True, host=host, port=port)
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)


def _print(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@jobs_app.command("list")
def jobs_list(
    status: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="Only jobs of this type.")] = None,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """One line per job: id, type, state, progress."""
    if api:
        rows = ApiClient(api, token).jobs(status.value if status else None, job_type)
    else:
        rows = [job.model_dump(mode="json") for job in JobRepository(make_store(Settings())).list(status, job_type)]
    for job in sorted(rows, key=lambda row: row["created_at"]):
        progress = job["progress"]
        total = f"/{progress['total']}" if progress.get("total") is not None else ""
        typer.echo(
            f"{job['id']:<28} {job['type']:<8} {job['state']:<10} {progress['step']}{total} {progress['message']}"
        )


@jobs_app.command("show")
def jobs_show(
    job_id: str,
    follow: Annotated[bool, typer.Option(help="Show a progress bar until the job ends.")] = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """The whole job record."""
    if api:
        client = ApiClient(api, token)
        _print(client.follow(job_id) if follow else client.job(job_id))
    else:
        _print(JobRepository(make_store(Settings())).get(job_id).model_dump(mode="json"))


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, api: ApiOption = None, token: TokenOption = None) -> None:
    """Ask a job to stop."""
    if api:
        _print(ApiClient(api, token).cancel(job_id))
    else:
        _print(JobRepository(make_store(Settings())).request_cancel(job_id).model_dump(mode="json"))


for _service in ("crawler", "filter", "captioner", "trainer", "inference", "pipeline"):
    try:
        _module = importlib.import_module(f"services.{_service}.cli")
    except ModuleNotFoundError as missing:
        # A slim service image lacks the other services' dependencies; their commands are absent.
        if not (missing.name or "").startswith(("services.", "torch", "diffusers", "transformers")):
            raise
        continue
    _module.register(app)
