from __future__ import annotations

from pydantic import BaseModel, Field


class PipelineParams(BaseModel):
    pipeline_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
