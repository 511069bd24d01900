"""Parameters of a `train` job (importable without torch: the API validates submissions with it)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool

from services.common.params import DatasetId, JobParams, Seed

DEFAULT_VALIDATION_PROMPTS = [
    "a girl with a red bow standing in a green meadow under a blue sky, studio ghibli style",
    "a small wooden house by the sea at sunset, studio ghibli style",
]
LORA_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")


class TrainParams(JobParams):
    """UNet LoRA on the SD1.5 attention projections (to_q, to_k, to_v, to_out.0)."""

    dataset_id: DatasetId
    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]{1,80}$", description="LoRA name (A1111 `<lora:NAME:1>`); default from dataset."
    )
    base_model: str | None = Field(None, description="Hub id or local folder; default GHIBLI_TRAINER_BASE_MODEL.")
    rank: int = Field(16, ge=1, le=256)
    alpha: float | None = Field(None, gt=0, description="LoRA alpha; default = rank (scale 1).")
    learning_rate: float = Field(1e-4, gt=0, le=1)
    lr_scheduler: Literal["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts"] = "cosine"
    lr_warmup_steps: int = Field(0, ge=0)
    max_steps: int = Field(1000, ge=1, le=1_000_000, description="Optimizer steps (ignored when `epochs` is set).")
    epochs: int | None = Field(None, ge=1, le=10_000, description="Passes over the dataset; overrides max_steps.")
    batch_size: int = Field(4, ge=1, le=256, description="Per process.")
    gradient_accumulation_steps: int = Field(1, ge=1, le=256)
    resolution: int = Field(512, ge=32, le=2048, multiple_of=8)
    center_crop: StrictBool = Field(True, description="False: one random crop per image (cacheable).")
    random_flip: StrictBool = True
    snr_gamma: float | None = Field(None, gt=0, description="Min-SNR loss weighting (5.0 is the paper's value).")
    noise_offset: float = Field(0.0, ge=0, le=1)
    prediction_type: Literal["epsilon", "v_prediction"] | None = Field(None, description="Default: the scheduler's.")
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = Field("auto", description="auto: fp16 on CUDA, else no.")
    gradient_checkpointing: StrictBool = False
    cache_latents: StrictBool = Field(True, description="Encode images and captions once, not every step.")
    torch_compile: StrictBool = False
    max_grad_norm: float = Field(1.0, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    seed: Seed = 42
    trigger: str | None = Field(None, max_length=100, description="Prepended to every caption as `<trigger>, …`.")
    checkpoint_every: int = Field(250, ge=1, description="Steps between checkpoints written to the store.")
    checkpoints_to_keep: int = Field(2, ge=1)
    validation_every: int | None = Field(250, ge=1, description="Steps between validation grids; None: at the end.")
    validation_prompts: list[Annotated[str, Field(pattern=r"\S", max_length=2000)]] = Field(
        default_factory=lambda: list(DEFAULT_VALIDATION_PROMPTS), max_length=16, description="None of them blank."
    )
    validation_seeds: list[Seed] = Field(default_factory=lambda: [0, 1], min_length=1, max_length=8)
    validation_inference_steps: int = Field(25, ge=1, le=200)
    validation_guidance_scale: float = Field(7.5, ge=0, le=30)

    @property
    def lora_alpha(self) -> float:
        return self.alpha if self.alpha is not None else float(self.rank)
