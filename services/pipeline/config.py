"""A pipeline config: the dataset and each stage's parameters (YAML or JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, model_validator

from services.common import registry
from services.common.datasets import Character
from services.common.params import JobParams, load_yaml

DEFAULT_SAMPLE_PROMPT = "a girl in a summer dress standing in a green meadow under a blue sky, studio ghibli style"


class DatasetSpec(BaseModel):
    id: str | None = Field(None, description="Reuse an existing dataset instead of creating one.")
    name: str = Field("ghibli", min_length=1, max_length=200)
    characters: list[Character] = Field(default_factory=list, max_length=500)


class Stage(BaseModel):
    name: str
    job_type: str


# Order matters: each stage consumes what the previous one wrote.
STAGES: tuple[Stage, ...] = (
    Stage(name="crawl", job_type="crawl"),
    Stage(name="filter", job_type="filter"),
    Stage(name="caption", job_type="caption"),
    Stage(name="train", job_type="train"),
    Stage(name="sample", job_type="infer"),
)


def stage_model(job_type: str) -> type[JobParams]:
    """A stage's config: the job type's params but `dataset_id`, which each run fills in.

    Its fields and their JSON schema are the job's own; rules that tie fields together are checked with the
    job's model when the config is validated (`PipelineConfig._stages_are_valid`).
    """
    params = registry.params_model(job_type)
    fields: dict[str, Any] = {
        name: (field.annotation, field) for name, field in params.model_fields.items() if name != "dataset_id"
    }
    name = f"{params.__name__.removesuffix('Params')}Stage"
    description = f"The `{job_type}` job's params, less `dataset_id`."
    return create_model(name, __base__=JobParams, __doc__=description, **fields)


CrawlStage = stage_model("crawl")
FilterStage = stage_model("filter")
CaptionStage = stage_model("caption")
TrainStage = stage_model("train")
SampleStage = stage_model("infer")


class PipelineConfig(BaseModel):
    """Each stage holds that job type's params without `dataset_id` (filled in per run).

    A stage set to null is skipped (e.g. `crawl: null` when images were uploaded already).
    """

    name: str = Field(min_length=1, max_length=200)
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    crawl: CrawlStage | None = Field(default_factory=CrawlStage)  # type: ignore[valid-type]
    filter: FilterStage | None = Field(default_factory=FilterStage)  # type: ignore[valid-type]
    caption: CaptionStage | None = Field(default_factory=CaptionStage)  # type: ignore[valid-type]
    train: TrainStage | None = Field(default_factory=TrainStage)  # type: ignore[valid-type]
    sample: SampleStage | None = Field(  # type: ignore[valid-type]
        default_factory=lambda: SampleStage(prompt=DEFAULT_SAMPLE_PROMPT, seeds=[1, 2, 3, 4], compare_base=True),
        description="The `infer` job run with the trained LoRA (`lora_id` is filled in from the train stage).",
    )

    def active_stages(self) -> list[Stage]:
        return [stage for stage in STAGES if getattr(self, stage.name) is not None]

    def stage_config(self, stage_name: str) -> dict[str, Any]:
        """What the config sets for the stage (unset fields take the job's defaults)."""
        config = getattr(self, stage_name)
        return config.model_dump(exclude_unset=True) if config is not None else {}

    def with_stage(self, stage_name: str, **values: Any) -> PipelineConfig:
        """A copy with `values` set in one stage's config (validated again)."""
        return PipelineConfig.model_validate(
            {**self.model_dump(exclude_unset=True), stage_name: {**self.stage_config(stage_name), **values}}
        )

    def stage_params(self, stage: Stage, dataset_id: str, upstream: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The stage's job params: its config plus what the run supplies (dataset, trained LoRA)."""
        params = self.stage_config(stage.name)
        if stage.name == "sample":
            params["lora_id"] = params.get("lora_id") or upstream.get("train", {}).get("lora_id")
        else:
            params["dataset_id"] = dataset_id
        return params

    @model_validator(mode="after")
    def _stages_are_valid(self) -> PipelineConfig:
        """Fail at submission, not hours later, when a stage's params are wrong."""
        placeholder_upstream = {"train": {"lora_id": "lora-to-be-trained"}}
        for stage in self.active_stages():
            params = self.stage_params(stage, "ds-to-be-created", placeholder_upstream)
            try:
                registry.admit(stage.job_type, registry.params_model(stage.job_type).model_validate(params))
            except ValueError as error:  # pydantic's ValidationError, or a limit of the stage's service
                raise ValueError(f"stage {stage.name!r}: {error}") from None
        return self


def load_config(path: Path) -> PipelineConfig:
    """Read and validate a YAML/JSON pipeline config; errors name the file and the field."""
    try:
        raw = load_yaml(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read pipeline config {path}: {error}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"pipeline config {path} must be a mapping of settings")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as error:
        raise ValueError(f"invalid pipeline config {path}:\n{error}") from None
