"""Captioning throughput of the real BLIP-large architecture (random weights) at batch 1 and batch N.

The model is built from BLIP-large's configuration here (ViT-L/16 at 384², BERT-base decoder with
cross-attention, 30,524-token vocabulary): the same shapes and FLOPs as
`Salesforce/blip-image-captioning-large`, nothing downloaded. It runs through the service's own
`BlipCaptioner` (processor, batching, fp16 on CUDA) on synthetic 512×512 images. The reference row
is batch 1 on the same device in the same run. Random weights never emit the end token, so every
caption runs to `--max-new-tokens`: the worst case for the real model.

    python bench/caption_bench.py --images 2 --batch-sizes 2 --max-new-tokens 10   # quick CPU run
    python bench/caption_bench.py --images 256 --batch-sizes 16 32 64 --device cuda

Goal (issue 4): ≥ 50 images/s on one H100/H200 at 512×512, beam search 3, max 40 tokens.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from services.captioner.blip import BlipCaptioner, GenerationOptions, resolve_device  # noqa: E402

BERT_VOCAB_SIZE, BLIP_VOCAB_SIZE = 30522, 30524  # BLIP adds [DEC] (its decoder's start token) and one more


def blip_large(seed: int = 0) -> tuple[torch.nn.Module, object]:
    """BlipForConditionalGeneration with blip-image-captioning-large's shapes, and its processor."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    # A vocabulary with BERT's special-token ids; the words themselves do not matter for timing.
    specials = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 30522: "[DEC]", 30523: "[ENC]"}
    vocab = [specials.get(index, f"w{index}") for index in range(BLIP_VOCAB_SIZE)]
    with tempfile.TemporaryDirectory() as folder:
        vocab_file = Path(folder) / "vocab.txt"
        vocab_file.write_text("\n".join(vocab) + "\n")
        tokenizer = BertTokenizer(str(vocab_file), bos_token="[DEC]", model_max_length=512)
    config = BlipConfig(
        vision_config={
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "image_size": 384,
            "patch_size": 16,
        },
        text_config={
            "vocab_size": BLIP_VOCAB_SIZE,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "max_position_embeddings": 512,
            "encoder_hidden_size": 1024,
            "bos_token_id": tokenizer.bos_token_id,
            "sep_token_id": tokenizer.sep_token_id,
            "eos_token_id": tokenizer.sep_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config)
    processor = BlipProcessor(BlipImageProcessor(size={"height": 384, "width": 384}), tokenizer)
    return model, processor


def synthetic_images(count: int, size: int = 512, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


def images_per_second(
    captioner: BlipCaptioner, images: list[Image.Image], batch_size: int, options: GenerationOptions
) -> float:
    if captioner.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        captioner.caption(images[start : start + batch_size], options)
    if captioner.device.type == "cuda":
        torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - started)


def bench_device(device: str, args: argparse.Namespace, images: list[Image.Image]) -> list[tuple[str, ...]]:
    torch_device, dtype = resolve_device(device, args.precision)
    model, processor = blip_large()
    captioner = BlipCaptioner(model, processor, torch_device, dtype)  # type: ignore[arg-type]
    options = GenerationOptions(
        num_beams=args.num_beams,
        min_new_tokens=args.max_new_tokens,
        max_new_tokens=args.max_new_tokens,
        repetition_penalty=1.3,
    )
    captioner.caption(images[:1], options)  # warm-up: kernels, allocator, lazy init
    dtype_name = str(dtype).removeprefix("torch.")
    reference = images_per_second(captioner, images, 1, options)
    rows = [(device, dtype_name, "1", f"{reference:.3g}", "1.00 (reference)")]
    best = (reference, 1)
    for batch_size in args.batch_sizes:
        rate = images_per_second(captioner, images, batch_size, options)
        best = max(best, (rate, batch_size))
        rows.append((device, dtype_name, str(batch_size), f"{rate:.3g}", f"{rate / reference:.2f}"))
    rows.append((device, dtype_name, f"best={best[1]}", f"{best[0]:.3g}", f"{best[0] / reference:.2f}"))
    del captioner, model
    if torch_device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4, help="images per measurement (each batch size sees all)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4], help="compared against batch 1")
    parser.add_argument("--num-beams", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--image-size", type=int, default=512, help="side of the synthetic input images")
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    parser.add_argument("--precision", choices=["auto", "fp16", "bf16", "fp32"], default="auto", help="CUDA dtype")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    images = synthetic_images(args.images, args.image_size)
    print(
        f"BLIP-large (random weights), {args.images} images {args.image_size}², beams {args.num_beams}, "
        f"{args.max_new_tokens} new tokens, torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    rows: list[tuple[str, ...]] = []
    notes = []
    if args.device in ("all", "cpu"):
        rows += bench_device("cpu", args, images)
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            notes.append(f"GPU: {torch.cuda.get_device_name(0)}")
            rows += bench_device("cuda", args, images)
        else:
            notes.append("no CUDA device: GPU rows skipped")
    header = ("device", "dtype", "batch", "images/s", "vs batch 1")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * width for width in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    for note in notes:
        print(note)
    print("goal on an H100/H200: >= 50 images/s at 512x512, beams 3, 40 new tokens (best batch)")


if __name__ == "__main__":
    main()
