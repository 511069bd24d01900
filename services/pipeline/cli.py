"""`ghibli-lora pipeline run|resume|status|demo`."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from services.common.cli_support import ApiOption, TokenOption
from services.common.client import ApiClient
from services.common.jobs import Job, JobRepository
from services.common.runner import execute_job
from services.common.settings import Settings
from services.common.storage import LocalStore, ObjectStore, make_store
from services.pipeline.config import PipelineConfig, load_config
from services.pipeline.demo import prepare_demo
from services.pipeline.launch import resume_pipeline, start_pipeline, stop_pipeline
from services.pipeline.records import PipelineRepository

pipeline_app = typer.Typer(help="Crawl → filter → caption → train → sample, as one watched, resumable run.")


class _ForegroundQueue:
    """The CLI runs the pipeline job itself, in this process, so submitting queues nothing."""

    def submit(self, job: Job) -> None:
        del job

    def check(self) -> None:
        return None


def _run_with_progress(job_id: str, store: ObjectStore, settings: Settings) -> Job:
    """Run the job in a thread and draw its progress until it ends."""
    worker = threading.Thread(target=execute_job, args=(job_id, store, settings), daemon=True)
    worker.start()
    jobs = JobRepository(store)
    with tqdm(desc="pipeline", unit="stage") as bar:
        while worker.is_alive():
            job = jobs.get(job_id)
            bar.total, bar.n = job.progress.total, job.progress.step
            bar.set_postfix_str(job.progress.message[:70], refresh=False)
            bar.refresh()
            time.sleep(0.5)
    return jobs.get(job_id)


def _finish(job: Job, store: ObjectStore) -> None:
    typer.echo(f"pipeline job {job.id}: {job.state.value}")
    if job.error:
        typer.echo(f"error: {job.error}", err=True)
        typer.echo(f"resume from the failed stage: ghibli-lora pipeline resume {job.params['pipeline_id']}", err=True)
        raise typer.Exit(1)
    report = job.result.get("report")
    if report and isinstance(store, LocalStore):
        typer.echo(f"report: {store.path_of(report)}")
    typer.echo(f"LoRA: {job.result.get('lora_id')}")


@pipeline_app.command("run")
def run(config: Path, api: ApiOption = None, token: TokenOption = None) -> None:
    """Run a pipeline from a YAML config (here, on embedded defaults, or on a server with --api)."""
    try:
        pipeline_config = load_config(config)
    except ValueError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    if api:
        client = ApiClient(api, token)
        accepted = client.create_pipeline(pipeline_config.model_dump(mode="json"))
        typer.echo(f"pipeline {accepted['pipeline_id']} (job {accepted['job_id']})")
        final = client.follow(accepted["job_id"])
        typer.echo(f"pipeline job {final['id']}: {final['state']} {final.get('error') or ''}")
        raise typer.Exit(0 if final["state"] == "succeeded" else 1)
    _run_here(pipeline_config, Settings())


def _run_here(pipeline_config: PipelineConfig, settings: Settings) -> None:
    store = make_store(settings)
    record, job = start_pipeline(pipeline_config, store, _ForegroundQueue())
    typer.echo(f"pipeline {record.id}, dataset {record.dataset_id}")
    _finish(_run_with_progress(job.id, store, settings), store)


@pipeline_app.command("demo")
def demo(
    config: Annotated[Path, typer.Argument(help="Demo pipeline config.")] = Path("examples/demo.yaml"),
    workdir: Annotated[Path, typer.Option(help="Where the pictures and tiny models go.")] = Path("data/demo"),
) -> None:
    """The offline demo: procedural pictures and tiny local models through every stage, here."""
    try:
        pipeline_config = load_config(config)
    except ValueError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    settings = Settings()
    typer.echo(f"preparing pictures and tiny models in {workdir} …")
    _run_here(prepare_demo(pipeline_config, workdir, make_store(settings)), settings)


@pipeline_app.command("resume")
def resume(pipeline_id: str) -> None:
    """Run a failed or canceled pipeline again from the stage that did not finish."""
    settings = Settings()
    store = make_store(settings)
    _, job = resume_pipeline(pipeline_id, store, _ForegroundQueue())
    _finish(_run_with_progress(job.id, store, settings), store)


@pipeline_app.command("stop")
def stop(pipeline_id: str, api: ApiOption = None, token: TokenOption = None) -> None:
    """Cancel the running stage and the run; `resume` continues from the stage that was stopped."""
    if api:
        ApiClient(api, token).stop_pipeline(pipeline_id)
    else:
        stop_pipeline(pipeline_id, make_store(Settings()))
    typer.echo(f"pipeline {pipeline_id}: stop requested")


@pipeline_app.command("status")
def status(pipeline_id: str) -> None:
    """Each stage's job, state and progress."""
    store = make_store(Settings())
    record = PipelineRepository(store).get(pipeline_id)
    jobs = JobRepository(store)
    for stage in record.config.active_stages():
        run = record.stages.get(stage.name)
        if run is None:
            typer.echo(f"{stage.name:<8} not started")
            continue
        job = jobs.get(run.job_id)
        total = f"/{job.progress.total}" if job.progress.total is not None else ""
        typer.echo(f"{stage.name:<8} {job.state.value:<10} {job.progress.step}{total} {job.progress.message}")


def register(app: typer.Typer) -> None:
    app.add_typer(pipeline_app, name="pipeline")
