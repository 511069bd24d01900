"""Which job types exist, which queue serves each, and where their params and handlers live.

Handlers are named by import path and imported only by the worker that runs them, so the API
and the crawler never import torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from services.common.jobs import JobContext


@dataclass(frozen=True)
class JobTypeSpec:
    name: str
    queue: str
    params: str  # "module:Class", a pydantic model; must import without heavy dependencies
    handler: str  # "module:function" taking a JobContext and returning the result dict
    # "module:function" taking the validated params, raising ValueError for a job no worker would accept
    # (limits that live in the worker's settings); checked at submission. Light imports only.
    admission: str | None = None


JOB_TYPES: dict[str, JobTypeSpec] = {
    spec.name: spec
    for spec in (
        JobTypeSpec("crawl", "crawl", "services.crawler.params:CrawlParams", "services.crawler.tasks:run_crawl"),
        JobTypeSpec("filter", "filter", "services.filter.params:FilterParams", "services.filter.tasks:run_filter"),
        JobTypeSpec(
            "caption", "caption", "services.captioner.params:CaptionParams", "services.captioner.tasks:run_caption"
        ),
        JobTypeSpec("train", "train", "services.trainer.params:TrainParams", "services.trainer.tasks:run_train"),
        JobTypeSpec(
            "infer",
            "infer",
            "services.inference.params:InferParams",
            "services.inference.tasks:run_infer",
            admission="services.inference.limits:admit",
        ),
        JobTypeSpec(
            "pipeline", "pipeline", "services.pipeline.params:PipelineParams", "services.pipeline.tasks:run_pipeline"
        ),
    )
}

QUEUES: tuple[str, ...] = tuple(dict.fromkeys(spec.queue for spec in JOB_TYPES.values()))


def _load(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def params_model(job_type: str) -> type[BaseModel]:
    return _load(JOB_TYPES[job_type].params)


def admit(job_type: str, params: BaseModel) -> None:
    """Raise ValueError when the job type's workers would refuse these params (e.g. past the service's caps)."""
    check = JOB_TYPES[job_type].admission
    if check is not None:
        _load(check)(params)


def handler(job_type: str) -> Callable[[JobContext], dict[str, Any]]:
    return _load(JOB_TYPES[job_type].handler)


def worker_command(queue: str, hostname: str, *extra_options: str) -> list[str]:
    """A Celery worker for one queue; the solo pool runs one job at a time (jobs bring their own parallelism)."""
    return [
        sys.executable, "-m", "celery", "-A", "services.common.celery_app", "worker",
        "-Q", queue, "--hostname", hostname, "--pool", "solo", "--loglevel", "INFO", *extra_options,
    ]  # fmt: skip
