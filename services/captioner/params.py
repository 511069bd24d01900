"""Caption job parameters; imported by the API, so no torch here."""

from __future__ import annotations

from pydantic import Field, StrictBool, model_validator

from services.common.params import DatasetId, JobParams

# Longer captions are cut by CLIP's 77 tokens anyway; this keeps hand edits in that range.
MAX_CAPTION_CHARS = 400


class CaptionParams(JobParams):
    dataset_id: DatasetId
    batch_size: int | None = Field(None, ge=1, le=512, description="Overrides GHIBLI_CAPTIONER_BATCH_SIZE.")
    num_beams: int = Field(3, ge=1, le=10)
    min_new_tokens: int = Field(5, ge=0, le=100, description="At most `max_new_tokens`.")
    max_new_tokens: int = Field(40, ge=1, le=100)
    repetition_penalty: float = Field(1.3, ge=1.0, le=3.0)
    prompt: str | None = Field(
        None, max_length=100, description="Conditional prefix BLIP continues, e.g. 'an illustration of'."
    )
    keep_prompt: StrictBool = Field(False, description="Keep the prompt's words at the start of each caption.")
    trigger: str | None = Field(None, max_length=50, description="Token put first in every caption, e.g. 'ghblstyle'.")
    style_suffix: str | None = Field(
        None, max_length=100, description="Appended to every caption, e.g. 'in Ghibli style'."
    )
    subject: str = Field("a character", min_length=1, max_length=50, description="Replaces a character's name.")
    extra_names: list[str] = Field(default_factory=list, max_length=500, description="More names to scrub (→ subject).")
    discard_hand_edits: StrictBool = Field(
        False, description="Replace captions people edited with the job's (by default a rerun keeps them)."
    )

    @model_validator(mode="after")
    def _lengths_are_ordered(self) -> CaptionParams:
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError("min_new_tokens must not exceed max_new_tokens")
        return self
