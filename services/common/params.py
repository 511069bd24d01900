"""What every job's params share, so the API, the CLI and the workers accept exactly the same values."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# torch.Generator.manual_seed takes up to 2**64 - 1; A1111 and the samplers' infotext keep seeds signed 64-bit.
Seed = Annotated[int, Field(ge=0, lt=2**63, description="A random seed in [0, 2**63).")]
Channel = Annotated[int, Field(ge=0, le=255)]


class JobParams(BaseModel):
    """Base of every job type's params: NaN and infinities are refused wherever the params come from
    (a YAML `.nan`, a Python caller), not only in JSON bodies."""

    model_config = ConfigDict(allow_inf_nan=False)
