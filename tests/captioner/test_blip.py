"""The BLIP wrapper on a tiny random model: batches, prompts, devices and precision."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from services.captioner.blip import BlipCaptioner, GenerationOptions, caption_in_batches, resolve_device

OPTIONS = GenerationOptions(num_beams=2, min_new_tokens=2, max_new_tokens=6)


def _images(count: int) -> list[Image.Image]:
    return [Image.new("RGB", (40, 40), (30 * index, 120, 200 - 20 * index)) for index in range(count)]


def test_the_batch_path_captions_every_image_in_order(tiny_blip_path: Path) -> None:
    captioner = BlipCaptioner.load(str(tiny_blip_path), device="cpu")
    seen: list[tuple[list[int], list[str]]] = []
    images = _images(5)
    caption_in_batches(
        captioner,
        list(range(5)),
        lambda index: None if index == 3 else images[index],  # an unreadable image drops out of its batch
        2,
        OPTIONS,
        lambda batch, captions: seen.append((batch, captions)),
    )
    assert [batch for batch, _ in seen] == [[0, 1], [2], [4]]
    assert all(len(captions) == len(batch) and all(captions) for batch, captions in seen)
    # Batching does not change a caption: image 4 alone and inside a batch get the same text.
    assert captioner.caption([images[4]], OPTIONS) == captioner.caption([images[0], images[4]], OPTIONS)[1:]


def test_a_prompt_is_continued(tiny_blip_path: Path) -> None:
    captioner = BlipCaptioner.load(str(tiny_blip_path), device="cpu")
    options = GenerationOptions(num_beams=1, min_new_tokens=1, max_new_tokens=4, prompt="a girl in")
    captions = captioner.caption(_images(2), options)
    assert all(caption.startswith("a girl in") for caption in captions)


def test_cpu_runs_fp32_even_when_half_precision_is_asked_for() -> None:
    assert resolve_device("cpu", "fp16") == (torch.device("cpu"), torch.float32)
    assert resolve_device("cpu", "bf16")[1] == torch.float32


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_asking_for_cuda_without_one_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda", "auto")


def test_a_missing_model_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="GHIBLI_CAPTIONER_MODEL_ID"):
        BlipCaptioner.load(str(tmp_path / "no-such-model"), device="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (fp16 captioning)")
def test_cuda_captions_in_fp16(tiny_blip_path: Path) -> None:
    captioner = BlipCaptioner.load(str(tiny_blip_path), device="auto")
    assert captioner.device.type == "cuda" and captioner.dtype == torch.float16
    assert next(captioner.model.parameters()).dtype == torch.float16
    assert len(captioner.caption(_images(3), OPTIONS)) == 3
