"""The SD1.5 UNet LoRA training loop (diffusers + peft + accelerate), on plain inputs and outputs.

Speed: with `cache_latents` the VAE posterior (mean, std) of every image (and of its mirror image)
and every caption's text embedding are computed once, so a step runs only the UNet; the fused
AdamW, channels-last and fp16 apply on CUDA; SDPA is diffusers' default attention.

Resumability: every random draw of step `s` (latent sample, noise, timesteps, data order, flips)
comes from a generator seeded by (seed, s, micro-step, process), so a checkpoint needs only the
LoRA weights, optimizer, LR scheduler and grad-scaler state to continue exactly where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from pydantic import BaseModel

from services.trainer.artifacts import image_grid, write_loss_curve
from services.trainer.data import TrainExample, image_tensor, is_flipped, load_examples
from services.trainer.params import LORA_TARGET_MODULES, TrainParams
from services.trainer.weights import write_lora_files

log = logging.getLogger(__name__)


@dataclass
class SDComponents:
    tokenizer: Any
    text_encoder: Any
    vae: Any
    unet: Any
    noise_scheduler: Any


def load_components(base_model: str) -> SDComponents:
    """The SD1.5 parts training needs, from a hub id or a local pipeline folder."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    return SDComponents(
        tokenizer=CLIPTokenizer.from_pretrained(base_model, subfolder="tokenizer"),
        text_encoder=CLIPTextModel.from_pretrained(base_model, subfolder="text_encoder"),
        vae=AutoencoderKL.from_pretrained(base_model, subfolder="vae"),
        unet=UNet2DConditionModel.from_pretrained(base_model, subfolder="unet"),
        noise_scheduler=DDPMScheduler.from_pretrained(base_model, subfolder="scheduler"),
    )


class TrainSpec(BaseModel):
    """Everything one training run needs; serialisable, so `accelerate launch` children can read it."""

    params: TrainParams
    base_model: str
    dataset_dir: Path
    work_dir: Path
    lora_name: str
    resume_checkpoint: Path | None = None
    metadata: dict[str, str] = {}


@dataclass(frozen=True)
class StepReport:
    step: int
    total: int
    loss: float
    lr: float
    it_per_s: float
    samples_per_s: float
    eta_s: float


class TrainEvents(Protocol):
    """What the loop reports (main process only). A raise from any of them stops training."""

    def on_step(self, report: StepReport) -> None: ...

    def on_checkpoint(self, step: int, path: Path) -> None: ...

    def on_validation(self, step: int, path: Path) -> None: ...


class TrainOutcome(BaseModel):
    steps: int
    resumed_from_step: int
    diffusers_path: Path
    kohya_path: Path
    loss_curve_json: Path
    loss_curve_png: Path
    config_path: Path
    final_loss: float | None


def total_steps(params: TrainParams, examples: int, processes: int) -> int:
    if params.epochs is None:
        return params.max_steps
    samples_per_step = params.batch_size * params.gradient_accumulation_steps * processes
    return params.epochs * math.ceil(examples / samples_per_step)


def resolve_mixed_precision(requested: str, cuda: bool) -> str:
    """fp16/bf16 only on CUDA (accelerate cannot run fp16 on CPU); 'auto' means fp16 there."""
    if not cuda:
        if requested in ("fp16", "bf16"):
            log.warning("mixed precision %s needs CUDA; training in fp32 on CPU", requested)
        return "no"
    return "fp16" if requested == "auto" else requested


def _seed_for(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("-".join(map(str, parts)).encode()).digest()[:8], "little") >> 1


class LatentSource:
    """Latent posteriors (mean, std) and caption embeddings for a batch, encoded on the fly."""

    def __init__(self, examples: list[TrainExample], models: SDComponents, params: TrainParams, device: torch.device):
        self.examples, self.models, self.params, self.device = examples, models, params, device
        self.dtype = next(models.vae.parameters()).dtype

    @torch.no_grad()
    def encode_images(self, indices: list[int], flips: list[bool]) -> tuple[torch.Tensor, torch.Tensor]:
        params = self.params
        pixels = []
        for index, flip in zip(indices, flips, strict=True):
            tensor = image_tensor(
                self.examples[index].image_path, params.resolution, params.center_crop, params.seed, index
            )
            pixels.append(tensor.flip(-1) if flip else tensor)
        batch = torch.stack(pixels).to(self.device, self.dtype, memory_format=torch.contiguous_format)
        posterior = self.models.vae.encode(batch).latent_dist
        return posterior.mean, posterior.std

    @torch.no_grad()
    def encode_texts(self, indices: list[int]) -> torch.Tensor:
        tokenizer = self.models.tokenizer
        tokens = tokenizer(
            [self.examples[index].text for index in indices],
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
        return self.models.text_encoder(tokens)[0]

    def batch(self, indices: list[int], flips: list[bool]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, std = self.encode_images(indices, flips)
        return mean, std, self.encode_texts(indices)


class CachedLatentSource:
    """The same tensors, computed once for the whole dataset (both orientations when flipping)."""

    CHUNK = 8

    def __init__(self, tensors: dict[str, torch.Tensor], device: torch.device):
        self.tensors, self.device = tensors, device

    @classmethod
    def build(cls, source: LatentSource, cache_file: Path) -> CachedLatentSource:
        if cache_file.is_file():
            return cls(torch.load(cache_file, map_location="cpu", weights_only=True), source.device)
        orientations = [False, True] if source.params.random_flip else [False]
        parts: dict[str, list[torch.Tensor]] = {"mean": [], "std": [], "text": []}
        for start in range(0, len(source.examples), cls.CHUNK):
            indices = list(range(start, min(start + cls.CHUNK, len(source.examples))))
            encoded = [source.encode_images(indices, [flip] * len(indices)) for flip in orientations]
            parts["mean"].append(torch.stack([mean for mean, _ in encoded], dim=1).cpu())
            parts["std"].append(torch.stack([std for _, std in encoded], dim=1).cpu())
            parts["text"].append(source.encode_texts(indices).cpu())
        tensors = {name: torch.cat(chunks) for name, chunks in parts.items()}
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = cache_file.with_suffix(".part")
        torch.save(tensors, temporary)
        temporary.replace(cache_file)
        return cls(tensors, source.device)

    def batch(self, indices: list[int], flips: list[bool]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = torch.tensor(indices)
        orientation = torch.tensor([int(flip) for flip in flips])
        pick = (rows, orientation)
        return tuple(  # type: ignore[return-value]
            tensor.to(self.device, non_blocking=True)
            for tensor in (self.tensors["mean"][pick], self.tensors["std"][pick], self.tensors["text"][rows])
        )


def _cache_file(spec: TrainSpec, examples: list[TrainExample], dtype: torch.dtype) -> Path:
    """Keyed by everything the cached tensors depend on, so a changed dataset is never served stale."""
    params = spec.params
    digest = hashlib.sha256()
    for part in (spec.base_model, params.resolution, params.center_crop, params.random_flip, params.seed, dtype):
        digest.update(f"{part}|".encode())
    for example in examples:
        digest.update(hashlib.sha256(example.image_path.read_bytes()).digest())
        digest.update(example.text.encode() + b"\0")
    return spec.work_dir / "cache" / f"{digest.hexdigest()[:24]}.pt"


class SampleOrder:
    """Which example (and orientation) sits at each position of the endless, epoch-shuffled stream."""

    def __init__(self, size: int, seed: int, flip: bool):
        self.size, self.seed, self.flip = size, seed, flip
        self._epoch, self._permutation = -1, torch.empty(0, dtype=torch.long)

    def at(self, position: int) -> tuple[int, bool]:
        epoch, offset = divmod(position, self.size)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(_seed_for("epoch", self.seed, epoch))
            self._epoch, self._permutation = epoch, torch.randperm(self.size, generator=generator)
        return int(self._permutation[offset]), is_flipped(self.flip, self.seed, position)


def diffusion_loss(
    unet: torch.nn.Module,
    scheduler: Any,
    params: TrainParams,
    mean: torch.Tensor,
    std: torch.Tensor,
    text: torch.Tensor,
    scaling_factor: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Noise-prediction (or v-prediction) MSE, with optional noise offset and min-SNR weighting."""
    device = mean.device
    sample = torch.randn(mean.shape, generator=generator, device=device, dtype=torch.float32).to(mean.dtype)
    latents = (mean + std * sample) * scaling_factor
    noise = torch.randn(latents.shape, generator=generator, device=device, dtype=torch.float32).to(latents.dtype)
    if params.noise_offset:
        offset = torch.randn((*latents.shape[:2], 1, 1), generator=generator, device=device, dtype=torch.float32)
        noise = noise + params.noise_offset * offset.to(latents.dtype)
    batch = latents.shape[0]
    timesteps = torch.randint(
        0, scheduler.config.num_train_timesteps, (batch,), generator=generator, device=device, dtype=torch.long
    )
    noisy = scheduler.add_noise(latents, noise, timesteps)
    epsilon = scheduler.config.prediction_type == "epsilon"
    target = noise if epsilon else scheduler.get_velocity(latents, noise, timesteps)
    prediction = unet(noisy, timesteps, text, return_dict=False)[0]
    if params.snr_gamma is None:
        return F.mse_loss(prediction.float(), target.float())
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, timesteps)
    weights = torch.clamp(snr, max=params.snr_gamma)
    weights = weights / snr if epsilon else weights / (snr + 1)
    per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * weights).mean()


@torch.no_grad()
def render_validation(models: SDComponents, unet: torch.nn.Module, params: TrainParams, path: Path) -> Path:
    """A grid for the fixed prompts (rows) and seeds (columns), at the training resolution."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    pipeline = StableDiffusionPipeline(
        vae=models.vae,
        text_encoder=models.text_encoder,
        tokenizer=models.tokenizer,
        unet=unet,
        scheduler=DPMSolverMultistepScheduler.from_config(models.noise_scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    rows = []
    for prompt in params.validation_prompts:
        result = pipeline(
            prompt,
            height=params.resolution,
            width=params.resolution,
            num_inference_steps=params.validation_inference_steps,
            guidance_scale=params.validation_guidance_scale,
            num_images_per_prompt=len(params.validation_seeds),
            generator=[torch.Generator("cpu").manual_seed(seed) for seed in params.validation_seeds],
        )
        rows.append(result.images)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(rows).save(path, format="PNG")
    return path


def _save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".part")
    torch.save(state, temporary)
    temporary.replace(path)
    return path


def train(spec: TrainSpec, events: TrainEvents, models: SDComponents | None = None) -> TrainOutcome:
    """Train the LoRA described by `spec`; resume from `spec.resume_checkpoint` when given."""
    from accelerate import Accelerator
    from diffusers.optimization import get_scheduler
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    params = spec.params
    examples = load_examples(spec.dataset_dir, params.trigger)  # fail on a bad dataset before loading models
    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(params.mixed_precision, torch.cuda.is_available()),
        gradient_accumulation_steps=params.gradient_accumulation_steps,
    )
    device, cuda = accelerator.device, accelerator.device.type == "cuda"
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    models = models or load_components(spec.base_model)
    if params.prediction_type:
        models.noise_scheduler.register_to_config(prediction_type=params.prediction_type)
    for frozen in (models.vae, models.text_encoder, models.unet):
        frozen.requires_grad_(False)
        # cast only for mixed precision: diffusers warns on any dtype cast of its fp32-pinned modules
        frozen.to(device, dtype=None if weight_dtype == torch.float32 else weight_dtype)
    unet = models.unet
    if cuda:
        unet.to(memory_format=torch.channels_last)
    torch.manual_seed(params.seed)  # LoRA init draws from the global generator
    unet.add_adapter(
        LoraConfig(
            r=params.rank,
            lora_alpha=params.lora_alpha,
            init_lora_weights="gaussian",
            target_modules=list(LORA_TARGET_MODULES),
        )
    )
    for parameter in unet.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()  # trainable LoRA weights stay fp32 under fp16 autocast
    if params.gradient_checkpointing:
        unet.enable_gradient_checkpointing()

    trainable = [parameter for parameter in unet.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.learning_rate, weight_decay=params.weight_decay, fused=cuda)
    steps = total_steps(params, len(examples), accelerator.num_processes)
    lr_scheduler = get_scheduler(
        params.lr_scheduler, optimizer, num_warmup_steps=params.lr_warmup_steps, num_training_steps=steps
    )
    if params.torch_compile:
        unet = torch.compile(unet)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    base_unet = accelerator.unwrap_model(unet)

    start_step, loss_curve = 0, []
    if spec.resume_checkpoint is not None:
        state = torch.load(spec.resume_checkpoint, map_location="cpu", weights_only=True)
        incompatible = set_peft_model_state_dict(base_unet, state["lora"])
        if incompatible is not None and incompatible.unexpected_keys:
            raise ValueError(f"checkpoint {spec.resume_checkpoint.name} does not match this LoRA configuration")
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        if accelerator.scaler is not None and state.get("scaler"):
            accelerator.scaler.load_state_dict(state["scaler"])
        start_step, loss_curve = int(state["step"]), list(state["loss_curve"])
        log.info("resuming %s from step %d", spec.lora_name, start_step)

    source: LatentSource | CachedLatentSource = LatentSource(examples, models, params, device)
    if params.cache_latents:
        cache_file = _cache_file(spec, examples, weight_dtype)
        with accelerator.main_process_first():  # the main process writes the cache, the others read it
            source = CachedLatentSource.build(source, cache_file)
    order = SampleOrder(len(examples), params.seed, params.random_flip)
    generator = torch.Generator(device=device)
    scaling_factor = models.vae.config.scaling_factor

    def checkpoint_state(step: int) -> dict[str, Any]:
        return {
            "step": step,
            "lora": get_peft_model_state_dict(base_unet),
            "optimizer": optimizer.state_dict(),
            "lr_scheduler": lr_scheduler.state_dict(),
            "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
            "loss_curve": loss_curve,
        }

    def validate(step: int) -> None:
        base_unet.eval()
        with accelerator.autocast():
            path = render_validation(models, base_unet, params, spec.work_dir / "validation" / f"step-{step:08d}.png")
        base_unet.train()
        events.on_validation(step, path)

    unet.train()
    micro_batch, accumulation = params.batch_size, params.gradient_accumulation_steps
    started, first_step = time.perf_counter(), start_step
    for step in range(start_step, steps):
        step_losses = []
        for micro in range(accumulation):
            slot = (step * accumulation + micro) * accelerator.num_processes + accelerator.process_index
            first = slot * micro_batch
            picks = [order.at(position) for position in range(first, first + micro_batch)]
            mean, std, text = source.batch([index for index, _ in picks], [flip for _, flip in picks])
            generator.manual_seed(_seed_for("noise", params.seed, step, micro, accelerator.process_index))
            with accelerator.accumulate(unet), accelerator.autocast():
                if cuda:
                    mean, std = (t.to(memory_format=torch.channels_last) for t in (mean, std))
                loss = diffusion_loss(unet, models.noise_scheduler, params, mean, std, text, scaling_factor, generator)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(trainable, params.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            step_losses.append(loss.detach())
        lr = lr_scheduler.get_last_lr()[0]
        lr_scheduler.step()
        done = step + 1
        step_loss = accelerator.gather(torch.stack(step_losses).mean().reshape(1)).mean().item()
        loss_curve.append({"step": done, "loss": step_loss, "lr": lr})
        if not math.isfinite(step_loss):
            raise FloatingPointError(f"loss became {step_loss} at step {done}; lower the learning rate")
        if accelerator.is_main_process:
            elapsed = time.perf_counter() - started
            it_per_s = (done - first_step) / elapsed if elapsed > 0 else 0.0
            samples = micro_batch * accumulation * accelerator.num_processes
            eta = (steps - done) / it_per_s if it_per_s else 0.0
            events.on_step(StepReport(done, steps, step_loss, lr, it_per_s, it_per_s * samples, eta))
        # Validation first: a checkpoint at step N then implies the grid for N exists, so a resume skips neither.
        if accelerator.is_main_process and params.validation_every and done % params.validation_every == 0:
            validate(done)
        if done % params.checkpoint_every == 0 or done == steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                path = spec.work_dir / "checkpoints" / f"step-{done:08d}.pt"
                events.on_checkpoint(done, _save_checkpoint(path, checkpoint_state(done)))
        accelerator.wait_for_everyone()

    final = spec.work_dir / "final"
    final.mkdir(parents=True, exist_ok=True)
    outcome = TrainOutcome(
        steps=steps,
        resumed_from_step=start_step,
        diffusers_path=final / "pytorch_lora_weights.safetensors",
        kohya_path=final / f"{spec.lora_name}.safetensors",
        loss_curve_json=final / "loss_curve.json",
        loss_curve_png=final / "loss_curve.png",
        config_path=final / "training_config.json",
        final_loss=loss_curve[-1]["loss"] if loss_curve else None,
    )
    if accelerator.is_main_process:
        if not params.validation_every or steps % params.validation_every:
            validate(steps)
        metadata = {
            **spec.metadata,
            "base_model": spec.base_model,
            "rank": params.rank,
            "alpha": params.lora_alpha,
            "steps": steps,
            "resolution": params.resolution,
            "training_config": params.model_dump_json(),
        }
        lora_state = {key: value.float() for key, value in get_peft_model_state_dict(base_unet).items()}
        write_lora_files(
            lora_state, params.rank, params.lora_alpha, LORA_TARGET_MODULES, final, spec.lora_name, metadata
        )
        write_loss_curve(loss_curve, outcome.loss_curve_json, outcome.loss_curve_png)
        outcome.config_path.write_text(json.dumps(spec.model_dump(mode="json"), indent=1))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return outcome
