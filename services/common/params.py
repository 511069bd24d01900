"""What every job's params share, so the API, the CLI and the workers accept exactly the same values."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# Below 2**53, a seed is exact as a JSON number in every client (JavaScript's included) and in the OpenAPI
# schema's bound; torch's generators take it as it is.
Seed = Annotated[int, Field(ge=0, lt=2**53, description="A random seed in [0, 2**53).")]
Channel = Annotated[int, Field(ge=0, le=255)]
ID_PATTERN = r"^[A-Za-z0-9_-]+$"
DatasetId = Annotated[str, Field(min_length=1, max_length=100, pattern=ID_PATTERN, description="A dataset's id.")]


class JobParams(BaseModel):
    """Base of every job type's params: NaN and infinities are refused wherever the params come from
    (a YAML `.nan`, a Python caller), not only in JSON bodies."""

    model_config = ConfigDict(allow_inf_nan=False)
