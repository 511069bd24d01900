"""LoRA weight files: diffusers/peft format and the AUTOMATIC1111/kohya format.

peft names a UNet LoRA `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight`;
kohya (and so A1111) names the same module `lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q`
with `.lora_down.weight` (peft's A), `.lora_up.weight` (B) and a scalar `.alpha`. kohya trains SD1.x on
the diffusers UNet layout, so converting is a rename, not a re-layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

DIFFUSERS_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
_PEFT_TO_KOHYA = {"lora_A": "lora_down", "lora_B": "lora_up"}


def peft_to_kohya(peft_state: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """A kohya state dict from a peft UNet LoRA state dict (`get_peft_model_state_dict(unet)`)."""
    kohya: dict[str, torch.Tensor] = {}
    for key, tensor in peft_state.items():
        module, _, tail = key.partition(".lora_")
        kind = f"lora_{tail.split('.', 1)[0]}"
        if kind not in _PEFT_TO_KOHYA or not tail.endswith("weight"):
            raise ValueError(f"unexpected LoRA key {key!r}: only lora_A/lora_B weights convert to kohya")
        name = "lora_unet_" + module.removeprefix("unet.").replace(".", "_")
        kohya[f"{name}.{_PEFT_TO_KOHYA[kind]}.weight"] = tensor.detach().to("cpu").contiguous()
        kohya[f"{name}.alpha"] = torch.tensor(float(alpha))
    return kohya


def _stringify(metadata: dict[str, object]) -> dict[str, str]:
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in metadata.items()}


def write_lora_files(
    peft_state: dict[str, torch.Tensor],
    rank: int,
    alpha: float,
    target_modules: tuple[str, ...],
    directory: Path,
    kohya_name: str,
    metadata: dict[str, object],
) -> tuple[Path, Path]:
    """Write `pytorch_lora_weights.safetensors` (diffusers) and `<kohya_name>.safetensors`; return both paths.

    Both carry `metadata` (base model, rank, steps, dataset …) in their safetensors header; the diffusers
    file also carries the adapter config diffusers reads back, so alpha ≠ rank loads at the right scale.
    """
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    directory.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(
        directory,
        unet_lora_layers=convert_state_dict_to_diffusers(peft_state),
        unet_lora_adapter_metadata={"r": rank, "lora_alpha": alpha, "target_modules": list(target_modules)},
    )
    diffusers_path = directory / DIFFUSERS_WEIGHT_NAME
    with safe_open(str(diffusers_path), framework="pt") as handle:
        written_metadata = handle.metadata() or {}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - safe_open has no __iter__
    save_file(tensors, str(diffusers_path), metadata={**written_metadata, **_stringify(metadata)})

    kohya_path = directory / f"{kohya_name}.safetensors"
    kohya_metadata = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(alpha),
        "ss_base_model_version": "sd_v1",
        **_stringify(metadata),
    }
    save_file(peft_to_kohya(peft_state, alpha), str(kohya_path), metadata=kohya_metadata)
    return diffusers_path, kohya_path
