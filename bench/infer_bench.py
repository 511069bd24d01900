"""Image generation throughput: a plain diffusers loop vs our engine (batched) vs concurrent HTTP clients.

Rows, all in one run on one pipeline:
  plain      `StableDiffusionPipeline(...)` called once per image, batch 1 (the reference)
  engine     `Engine.render` with `--batch` images per call (what the batcher does under load)
  http       `--clients` concurrent clients, one image per `POST /v1/generate` (uvicorn on loopback)
plus UNet it/s at batch 1 (steps × images / time of the plain loop, so text encoding and VAE
decoding count against it) and LoRA switch latency (adapter resident; and a first load from disk).

    python bench/infer_bench.py                      # CUDA: real SD1.5 architecture, random weights, 512², 25 steps
    python bench/infer_bench.py --arch tiny --size 64 --steps 10 --images 16 --clients 8   # CPU, a few seconds

Goals (issue 6, on an H100): http ≥ 1.5× plain images/s, ≥ 100 UNet it/s at batch 1, LoRA switch < 100 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import torch

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from services.common.loras import LoraRecord, LoraRepository  # noqa: E402
from services.common.settings import Settings  # noqa: E402
from services.common.storage import LocalStore, ObjectStore, sha256_hex  # noqa: E402
from services.common.tiny_models import build_tiny_sd, sd15_random_modules  # noqa: E402
from services.inference.engine import Engine, ImageSpec, LoraCache, RenderSettings  # noqa: E402
from services.inference.settings import InferenceSettings  # noqa: E402
from tests.support import free_port  # noqa: E402

PROMPT = "a girl with a red bow in a green forest, studio ghibli style"
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def sd15_random(workdir: Path, dtype: torch.dtype) -> Any:
    """The SD1.5 architecture (UNet 860M, VAE, CLIP ViT-L text encoder) with random weights, built in memory."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    modules = sd15_random_modules(workdir / "vocab")
    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", use_karras_sigmas=True
    )
    return StableDiffusionPipeline(
        **modules,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).to(dtype=dtype)


def random_lora(unet: Any, rank: int, seed: int) -> bytes:
    """A diffusers-format LoRA file (`unet.<module>.lora_A/B.weight`) on every attention projection."""
    from safetensors.torch import save

    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(LORA_TARGETS) and ".attn" in name:
            state[f"unet.{name}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=generator) * 0.01
            state[f"unet.{name}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=generator) * 0.01
    return save({key: value.half() for key, value in state.items()})


def register_lora(store: ObjectStore, lora_id: str, data: bytes) -> None:
    key = store.put_bytes(f"loras/{lora_id}/pytorch_lora_weights.safetensors", data)
    LoraRepository(store).save(
        LoraRecord(
            id=lora_id, name=lora_id, base_model="bench", rank=0, alpha=0, steps=0,
            diffusers_key=key, kohya_key=f"loras/{lora_id}/absent.safetensors", sha256=sha256_hex(data),
        )
    )  # fmt: skip


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_loop(pipeline: Any, args: argparse.Namespace) -> float:
    """Seconds for `--images` images, one plain pipeline call each."""
    started = time.perf_counter()
    for seed in range(args.images):
        pipeline(
            PROMPT,
            num_inference_steps=args.steps,
            guidance_scale=7.0,
            width=args.size,
            height=args.size,
            generator=torch.Generator("cpu").manual_seed(seed),
        )
    sync(pipeline.device)
    return time.perf_counter() - started


def engine_batched(engine: Engine, render: RenderSettings, args: argparse.Namespace) -> float:
    started = time.perf_counter()
    for first in range(0, args.images, args.batch):
        engine.render(
            render, [ImageSpec(PROMPT, "", seed) for seed in range(first, min(args.images, first + args.batch))]
        )
    sync(engine.device)
    return time.perf_counter() - started


def http_clients(engine: Engine, store: ObjectStore, args: argparse.Namespace, workdir: Path) -> tuple[float, int]:
    """Seconds for `--images` images from `--clients` concurrent clients; and the pipeline calls it took."""
    import uvicorn

    from services.inference.app import create_app

    limits = InferenceSettings(
        _env_file=None,
        max_width=max(args.size, 8),
        max_height=max(args.size, 8),
        max_images=1,
        max_batch_images=args.batch,
        batch_window_ms=args.window_ms,
        max_queued_requests=args.images,
        request_timeout_s=3600,
    )
    app = create_app(Settings(_env_file=None, data_dir=workdir / "data"), limits, engine, store)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    body = {"prompt": PROMPT, "steps": args.steps, "width": args.size, "height": args.size, "sampler": args.sampler}

    def one(seed: int) -> None:
        response = httpx.post(f"http://127.0.0.1:{port}/v1/generate", json={**body, "seeds": [seed]}, timeout=3600)
        response.raise_for_status()

    calls = engine.render_calls
    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(one, range(args.images)))
    elapsed = time.perf_counter() - started
    server.should_exit = True
    return elapsed, engine.render_calls - calls


def lora_switch_ms(engine: Engine, store: ObjectStore, rank: int, repeats: int = 20) -> tuple[float, float]:
    """(median ms to switch between two resident adapters, ms to load a third from the local cache)."""
    for index in range(3):
        register_lora(store, f"bench-lora-{index}", random_lora(engine.pipeline.unet, rank, seed=index))
    engine.use_loras((("bench-lora-0", 1.0),))
    engine.use_loras((("bench-lora-1", 1.0),))
    switches = []
    for index in range(repeats):
        started = time.perf_counter()
        engine.use_loras(((f"bench-lora-{index % 2}", 0.5 + index / repeats),))
        sync(engine.device)
        switches.append(1000 * (time.perf_counter() - started))
    engine.loras.weights_file(engine.loras.resolve("bench-lora-2"))  # download first: time the load only
    started = time.perf_counter()
    engine.use_loras((("bench-lora-2", 1.0),))
    sync(engine.device)
    first_load = 1000 * (time.perf_counter() - started)
    engine.use_loras(())
    return statistics.median(switches), first_load


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["sd15", "tiny"], default="sd15" if cuda else "tiny")
    parser.add_argument("--size", type=int, default=512 if cuda else 64)
    parser.add_argument("--steps", type=int, default=25 if cuda else 10)
    parser.add_argument("--images", type=int, default=32 if cuda else 16)
    parser.add_argument("--batch", type=int, default=8, help="Images per engine call (the batcher's cap).")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--window-ms", type=float, default=15.0)
    parser.add_argument("--lora-rank", type=int, default=16 if cuda else 4)
    parser.add_argument("--sampler", default="DPM++ 2M Karras")
    args = parser.parse_args()

    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.float16 if cuda else torch.float32
    workdir = Path(tempfile.mkdtemp(prefix="infer-bench-"))
    if args.arch == "sd15":
        pipeline = sd15_random(workdir, dtype)
    else:
        from diffusers import StableDiffusionPipeline

        pipeline = StableDiffusionPipeline.from_pretrained(build_tiny_sd(workdir / "tiny-sd"), dtype=dtype)
    pipeline = pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    store = LocalStore(workdir / "objects")
    engine = Engine(pipeline, LoraCache(store, workdir / "lora-cache"), f"{args.arch}-random", resident_loras=4)
    render = RenderSettings(args.steps, 7.0, args.size, args.size, args.sampler)

    print(
        f"device: {torch.cuda.get_device_name() if cuda else 'CPU (no CUDA device: GPU rows not measured)'}, "
        f"arch {args.arch} (random weights), {args.size}x{args.size}, {args.steps} steps, {args.images} images, "
        f"{dtype}, torch {torch.__version__}, {torch.get_num_threads()} threads",
        flush=True,
    )
    engine.render(render, [ImageSpec(PROMPT, "", 0)] * min(2, args.batch))  # warm-up: kernels, allocator
    pipeline.scheduler = engine.scheduler_for(args.sampler)  # the plain loop uses the same sampler
    plain_s = plain_loop(pipeline, args)
    engine_s = engine_batched(engine, render, args)
    http_s, http_calls = http_clients(engine, store, args, workdir)
    switch_ms, load_ms = lora_switch_ms(engine, store, args.lora_rank)

    plain_ips = args.images / plain_s
    rows = [
        ("plain pipeline loop, batch 1", args.images / plain_s, f"UNet {args.steps * args.images / plain_s:.1f} it/s"),
        (f"engine, batch {args.batch}", args.images / engine_s, ""),
        (f"HTTP, {args.clients} concurrent clients", args.images / http_s, f"{http_calls} pipeline calls"),
    ]
    print(f"\n| {'path':<36} | {'images/s':>9} | {'× plain':>7} | note")
    print(f"|{'-' * 38}|{'-' * 11}|{'-' * 9}|------")
    for name, images_per_s, note in rows:
        print(f"| {name:<36} | {images_per_s:9.2f} | {images_per_s / plain_ips:7.2f} | {note}")
    print(f"\nLoRA switch (resident adapters, rank {args.lora_rank}): median {switch_ms:.1f} ms")
    print(f"LoRA first load (from the local cache into the pipeline): {load_ms:.1f} ms")
    if not cuda:
        print("No CUDA device: the issue's goals (H100, SD1.5 at 512², 25 steps) are not measured by this run.")


if __name__ == "__main__":
    main()
