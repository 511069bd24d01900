"""Sampler names as AUTOMATIC1111 shows them, mapped to diffusers schedulers (no torch import here)."""

from __future__ import annotations

from typing import Any

DEFAULT_SAMPLER = "DPM++ 2M Karras"

# name → (diffusers scheduler class, extra config); the A1111 spellings are what clients send.
SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2S a": ("DPMSolverSinglestepScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
}
_BY_LOWER = {name.lower(): name for name in SAMPLERS}


def canonical_sampler(name: str, scheduler: str | None = None) -> str:
    """The SAMPLERS key for `name` (case-insensitive); A1111 ≥1.9 sends the Karras schedule separately.

    Raises ValueError naming the known samplers.
    """
    wanted = name.strip().lower()
    if scheduler and scheduler.strip().lower() == "karras" and f"{wanted} karras" in _BY_LOWER:
        wanted += " karras"
    if wanted not in _BY_LOWER:
        raise ValueError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")
    return _BY_LOWER[wanted]
