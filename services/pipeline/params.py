from __future__ import annotations

from pydantic import Field

from services.common.params import JobParams


class PipelineParams(JobParams):
    pipeline_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
