"""Training throughput of the real SD1.5 architecture (random weights, built from config, no download).

Rows, all in one run and on the same data and seed:
  reference  : latents and text embeddings encoded every step (the diffusers example script's method)
  cache      : latents and text embeddings encoded once (this trainer's default)
  ... each with and without gradient checkpointing.
Reported: optimizer steps/s and samples/s from the median time of the timed steps (the first step
is warm-up), the ratio against the reference row, the time to the end of the first step (model prep,
cache encoding, first step), and the largest loss
difference from the reference on the shared steps (same seed ⇒ same noise/timesteps ⇒ same curve).

On CPU the default is a reduced size (128 px, batch 1, 3 timed steps) so a run stays under a few
minutes; GPU rows (512 px, batch 1 and 4, fp16) run only where CUDA is present.

    OMP_NUM_THREADS=2 .venv/bin/python bench/train_bench.py            # CPU rows (+ GPU rows on CUDA)
    .venv/bin/python bench/train_bench.py --resolution 256 --steps 5   # bigger CPU rows
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.tiny_models import sd15_random_modules
from services.trainer.core import SDComponents, StepReport, TrainSpec, train
from services.trainer.params import TrainParams


def sd15_components(vocab_dir: Path) -> SDComponents:
    """SD1.5's UNet (860M), VAE and CLIP ViT-L/14 text encoder shapes, randomly initialised."""
    from diffusers import DDPMScheduler

    modules = sd15_random_modules(vocab_dir)
    scheduler = DDPMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000
    )
    return SDComponents(modules["tokenizer"], modules["text_encoder"], modules["vae"], modules["unet"], scheduler)


def write_dataset(folder: Path, count: int, resolution: int) -> Path:
    generator = np.random.default_rng(0)
    rows = []
    for index in range(count):
        pixels = generator.integers(0, 255, (resolution, resolution, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
        rows.append({"file_name": f"{index}.png", "text": f"a studio ghibli style landscape number {index}"})
    (folder / "captions.json").write_text(json.dumps(rows))
    return folder


class StepClock:
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step(self, report: StepReport) -> None:
        self.times.append(time.perf_counter())

    def on_checkpoint(self, step: int, path: Path) -> None:
        del step, path

    def on_validation(self, step: int, path: Path) -> None:
        del step, path


@dataclass
class Row:
    device: str
    resolution: int
    batch: int
    cache: bool
    checkpointing: bool
    steps_per_s: float
    samples_per_s: float
    to_first_step_s: float
    losses: list[float]


def fresh_unet_copy(pristine: SDComponents) -> SDComponents:
    """The same components with a new UNet module sharing the pristine (frozen, never written) weights,
    so every row starts from identical weights without re-initialising 860M parameters."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(pristine.unet.config)
    unet.load_state_dict(pristine.unet.state_dict(), assign=True)
    return SDComponents(pristine.tokenizer, pristine.text_encoder, pristine.vae, unet, pristine.noise_scheduler)


def measure(
    work: Path,
    pristine: SDComponents,
    resolution: int,
    batch: int,
    steps: int,
    cache: bool,
    checkpointing: bool,
    device: str,
) -> Row:
    params = TrainParams(
        dataset_id="bench",
        resolution=resolution,
        batch_size=batch,
        max_steps=steps + 1,
        cache_latents=cache,
        gradient_checkpointing=checkpointing,
        random_flip=False,
        checkpoint_every=10**6,
        validation_every=None,
        validation_prompts=["a hill"],
        validation_seeds=[0],
        validation_inference_steps=1,
    )
    name = f"{device}-{resolution}-{batch}-{cache}-{checkpointing}"
    spec = TrainSpec(
        params=params,
        base_model="sd15-random",
        dataset_dir=work / "data",
        work_dir=work / name,
        lora_name=name,
    )
    models = fresh_unet_copy(pristine)
    clock = StepClock()
    started = time.perf_counter()
    outcome = train(spec, clock, models)
    del models
    gc.collect()
    # median step time: robust to other processes' bursts on a shared machine
    step_s = statistics.median(later - earlier for earlier, later in itertools.pairwise(clock.times))
    losses = [point["loss"] for point in json.loads(outcome.loss_curve_json.read_text())]
    return Row(
        device,
        resolution,
        batch,
        cache,
        checkpointing,
        1 / step_s,
        batch / step_s,
        clock.times[0] - started,
        losses,
    )


def print_table(rows: list[Row]) -> None:
    print(
        "| device | res | batch | latent+text cache | grad ckpt | steps/s | samples/s | × reference "
        "| to 1st step s | max abs Δloss vs reference |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        reference = next(
            ref
            for ref in rows
            if (ref.device, ref.resolution, ref.batch, ref.cache, ref.checkpointing)
            == (row.device, row.resolution, row.batch, False, False)
        )
        delta = max(abs(a - b) for a, b in zip(row.losses, reference.losses, strict=True))
        label = "reference (encode every step)" if row is reference else ("yes" if row.cache else "no")
        print(
            f"| {row.device} | {row.resolution} | {row.batch} | {label} | {'yes' if row.checkpointing else 'no'} "
            f"| {row.steps_per_s:.3f} | {row.samples_per_s:.3f} | {row.samples_per_s / reference.samples_per_s:.2f}× "
            f"| {row.to_first_step_s:.1f} | {delta:.2e} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=128, help="CPU rows' resolution (GPU rows use 512).")
    parser.add_argument("--batch", type=int, default=1, help="CPU rows' batch size (GPU rows use 1 and 4).")
    parser.add_argument("--steps", type=int, default=3, help="Timed steps per CPU row (GPU rows use 20).")
    parser.add_argument("--no-cpu", action="store_true", help="Only the GPU rows.")
    args = parser.parse_args()

    rows: list[Row] = []
    variants = [(False, False), (True, False), (False, True), (True, True)]
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        (work / "data").mkdir()
        write_dataset(work / "data", 8, 512)
        pristine = sd15_components(work / "vocab")
        if not args.no_cpu:
            print(
                f"CPU rows at a reduced size: {args.resolution} px, batch {args.batch}, {args.steps} timed steps "
                f"(torch threads: {torch.get_num_threads()})",
                file=sys.stderr,
            )
            for cache, checkpointing in variants:
                rows.append(
                    measure(work, pristine, args.resolution, args.batch, args.steps, cache, checkpointing, "cpu")
                )
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
            for batch in (1, 4):
                for cache, checkpointing in variants:
                    rows.append(measure(work, pristine, 512, batch, 20, cache, checkpointing, f"cuda ({gpu}, fp16)"))
    print_table(rows)
    if not torch.cuda.is_available():
        print("| cuda | 512 | 1, 4 | — | — | — | — | — | — | no CUDA device |")


if __name__ == "__main__":
    main()
