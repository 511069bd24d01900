"""Fixtures: the tiny SD pipeline with tiny LoRAs made here with peft, registered in a store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.loras import LoraRecord, LoraRepository
from services.common.storage import LocalStore, ObjectStore, sha256_hex
from services.inference import settings as inference_settings_module
from services.inference.engine import Engine
from services.inference.settings import InferenceSettings

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def make_tiny_lora(tiny_sd_path: Path, seed: int) -> tuple[bytes, bytes]:
    """(diffusers file, kohya file) of one random rank-4 LoRA on the tiny UNet's attention."""
    import torch
    from diffusers import UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_kohya
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(tiny_sd_path / "unet")
    # init_lora_weights=False: random A and B, so the LoRA visibly changes the image from step 0.
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=LORA_TARGETS, init_lora_weights=False))
    peft_state = get_peft_model_state_dict(unet)
    # The diffusers file format is what `save_lora_weights` writes: `unet.`-prefixed diffusers keys.
    diffusers_state = {
        f"unet.{key}": value.contiguous() for key, value in convert_state_dict_to_diffusers(peft_state).items()
    }
    kohya_state = convert_state_dict_to_kohya({f"unet.{key}": value for key, value in peft_state.items()})
    return save(diffusers_state), save({key: value.contiguous() for key, value in kohya_state.items()})


def register_lora(store: ObjectStore, tiny_sd_path: Path, lora_id: str, name: str, seed: int) -> LoraRecord:
    diffusers_file, kohya_file = make_tiny_lora(tiny_sd_path, seed)
    record = LoraRecord(
        id=lora_id,
        name=name,
        base_model=str(tiny_sd_path),
        rank=4,
        alpha=4,
        steps=1,
        diffusers_key=store.put_bytes(f"loras/{lora_id}/pytorch_lora_weights.safetensors", diffusers_file),
        kohya_key=store.put_bytes(f"loras/{lora_id}/{name}.safetensors", kohya_file),
        sha256=sha256_hex(kohya_file),
    )
    LoraRepository(store).save(record)
    return record


@pytest.fixture(scope="module")
def lora_store(tmp_path_factory: pytest.TempPathFactory, tiny_sd_path: Path) -> ObjectStore:
    """A store holding two LoRAs: `totoro` (lora-a) and `kiki` (lora-b)."""
    store = LocalStore(tmp_path_factory.mktemp("inference-store"))
    register_lora(store, tiny_sd_path, "lora-a", "totoro", seed=1)
    register_lora(store, tiny_sd_path, "lora-b", "kiki", seed=2)
    return store


@pytest.fixture(scope="module")
def inference_settings(tmp_path_factory: pytest.TempPathFactory, tiny_sd_path: Path) -> InferenceSettings:
    return InferenceSettings(
        _env_file=None,
        base_model=str(tiny_sd_path),
        device="cpu",
        lora_cache_dir=tmp_path_factory.mktemp("lora-cache"),
        max_width=64,
        max_height=64,
        max_steps=10,
        max_images=4,
        max_batch_images=4,
        batch_window_ms=50,
        max_queued_requests=4,
        request_timeout_s=60,
    )


@pytest.fixture(scope="module")
def engine(inference_settings: InferenceSettings, lora_store: ObjectStore) -> Engine:
    return Engine.load(inference_settings, lora_store)


@pytest.fixture
def infer_env(monkeypatch: pytest.MonkeyPatch, tiny_sd_path: Path, tmp_path: Path) -> Iterator[None]:
    """Inference settings from the environment, as a worker or the CLI reads them."""
    monkeypatch.setenv("GHIBLI_INFERENCE_BASE_MODEL", str(tiny_sd_path))
    monkeypatch.setenv("GHIBLI_INFERENCE_DEVICE", "cpu")
    monkeypatch.setenv("GHIBLI_INFERENCE_LORA_CACHE_DIR", str(tmp_path / "lora-cache"))
    monkeypatch.setenv("GHIBLI_INFERENCE_MAX_BATCH_IMAGES", "2")
    inference_settings_module.get_inference_settings.cache_clear()
    yield
    inference_settings_module.get_inference_settings.cache_clear()
