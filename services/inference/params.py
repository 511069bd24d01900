"""What a generation asks for: the `infer` job's params and the HTTP request bodies (no torch here)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from services.common.params import JobParams, Seed
from services.inference.samplers import DEFAULT_SAMPLER, canonical_sampler

MAX_PROMPT_CHARS = 2000


class LoraRef(JobParams):
    id: str = Field(min_length=1, max_length=200, description="LoRA id or name from the registry.")
    scale: float = Field(1.0, ge=-4.0, le=4.0)


class GenerationParams(JobParams):
    """One prompt rendered once per seed; limits tighter than these come from InferenceSettings."""

    prompt: str = Field(max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    steps: int = Field(25, ge=1, le=150)
    guidance_scale: float = Field(7.0, ge=0.0, le=30.0)
    width: int = Field(512, ge=8, le=2048, multiple_of=8)
    height: int = Field(512, ge=8, le=2048, multiple_of=8)
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1, max_length=64)
    sampler: str = DEFAULT_SAMPLER
    loras: list[LoraRef] = Field(default_factory=list, max_length=8)
    lora_id: str | None = Field(None, description="Shorthand for one entry in `loras` (the pipeline's sample stage).")
    lora_scale: float = Field(1.0, ge=-4.0, le=4.0)

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, sampler: str) -> str:
        return canonical_sampler(sampler)

    @model_validator(mode="after")
    def _expand_lora_shorthand(self) -> GenerationParams:
        if self.lora_id and all(ref.id != self.lora_id for ref in self.loras):
            self.loras.append(LoraRef(id=self.lora_id, scale=self.lora_scale))
        if len({ref.id for ref in self.loras}) != len(self.loras):
            raise ValueError("each LoRA may appear once in `loras`")
        return self


def _comparison_needs_a_lora(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """The JSON-schema form of `InferParams._comparison_needs_a_lora`: no comparison asked for, or a LoRA named."""
    compares_by_default = model.model_fields["compare_base"].default is True
    no_comparison = {"properties": {"compare_base": {"const": False}, "compare_scales": {"maxItems": 0}}}
    if compares_by_default:
        no_comparison["required"] = ["compare_base"]
    schema["anyOf"] = [
        no_comparison,
        {"required": ["lora_id"], "properties": {"lora_id": {"type": "string", "minLength": 1}}},
        {"required": ["loras"], "properties": {"loras": {"type": "array", "minItems": 1}}},
    ]


class InferParams(GenerationParams):
    """The `infer` job. Result: `{"images": [keys], "grid": key, "comparison": key|None}`."""

    model_config = ConfigDict(json_schema_extra=_comparison_needs_a_lora)

    compare_base: StrictBool = Field(False, description="Also render without LoRA: a base-vs-LoRA comparison grid.")
    compare_scales: list[float] = Field(
        default_factory=list, max_length=6, description="Extra LoRA scales for the comparison grid's rows."
    )

    @model_validator(mode="after")
    def _comparison_needs_a_lora(self) -> InferParams:
        if (self.compare_base or self.compare_scales) and not self.loras:
            raise ValueError("a comparison grid needs a LoRA (`lora_id` or `loras`)")
        return self


class CompareRequest(InferParams):
    """`POST /v1/compare`: the comparison grid as one labelled PNG."""

    compare_base: StrictBool = True
