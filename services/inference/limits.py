"""The inference service's own caps (`GHIBLI_INFERENCE_MAX_*`), checked by the service and, before an `infer`
job is queued, by the gateway: a job that asks for more gets a 422 at submission, not a failure later."""

from __future__ import annotations

from services.inference.params import GenerationParams
from services.inference.settings import InferenceSettings


class LimitError(ValueError):
    """The request is valid but larger than this service allows; the message names the limit."""


def check_limits(params: GenerationParams, limits: InferenceSettings) -> None:
    problems = [
        f"{name} {value} exceeds the limit of {cap}"
        for name, value, cap in (
            ("width", params.width, limits.max_width),
            ("height", params.height, limits.max_height),
            ("steps", params.steps, limits.max_steps),
            ("number of images", len(params.seeds), limits.max_images),
        )
        if value > cap
    ]
    if problems:
        raise LimitError("; ".join(problems))


def admit(params: GenerationParams) -> None:
    """The gateway's check of an `infer` job, with the caps the inference containers read from the same `.env`."""
    check_limits(params, InferenceSettings())
