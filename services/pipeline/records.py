"""Pipeline records: `pipelines/<id>/pipeline.json`, which job ran each stage and how it ended."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from pydantic import BaseModel, Field

from services.common.jobs import JobState, new_id, now
from services.common.storage import ObjectStore
from services.pipeline.config import PipelineConfig


class StageRun(BaseModel):
    job_id: str
    state: JobState = JobState.queued


class PipelineRecord(BaseModel):
    id: str
    config: PipelineConfig
    dataset_id: str
    stages: dict[str, StageRun] = Field(default_factory=dict)
    job_ids: list[str] = Field(default_factory=list, description="Pipeline jobs, one per run/resume.")
    report_key: str | None = None
    created_at: datetime = Field(default_factory=now)


class PipelineRepository:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @staticmethod
    def record_key(pipeline_id: str) -> str:
        return f"pipelines/{pipeline_id}/pipeline.json"

    def create(self, config: PipelineConfig, dataset_id: str) -> PipelineRecord:
        record = PipelineRecord(id=new_id("pipe"), config=config, dataset_id=dataset_id)
        self.save(record)
        return record

    def save(self, record: PipelineRecord) -> None:
        self.store.put_bytes(self.record_key(record.id), record.model_dump_json().encode(), "application/json")

    def get(self, pipeline_id: str) -> PipelineRecord:
        return PipelineRecord.model_validate_json(self.store.get_bytes(self.record_key(pipeline_id)))

    def list(self) -> Iterator[PipelineRecord]:
        for key in self.store.list("pipelines/"):
            if key.endswith("/pipeline.json"):
                yield PipelineRecord.model_validate_json(self.store.get_bytes(key))
