"""A1111 prompt tags, infotext and sampler names; request limits (no model needed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.inference.a1111 import PromptError, extract_lora_tags, format_parameters, parse_parameters
from services.inference.limits import LimitError, check_limits
from services.inference.params import GenerationParams, InferParams, LoraRef
from services.inference.samplers import canonical_sampler
from services.inference.settings import InferenceSettings


def test_lora_tags_are_removed_from_the_prompt_and_returned() -> None:
    prompt, loras = extract_lora_tags("<lora:totoro:0.8> a girl, forest <lora:kiki>, night")
    assert prompt == "a girl, forest, night"
    assert loras == [LoraRef(id="totoro", scale=0.8), LoraRef(id="kiki", scale=1.0)]


def test_a_lora_tag_with_a_bad_weight_is_rejected() -> None:
    with pytest.raises(PromptError, match="not a number"):
        extract_lora_tags("<lora:totoro:lots> a girl")
    with pytest.raises(PromptError, match="less than or equal to 4"):
        extract_lora_tags("<lora:totoro:9> a girl")


def test_parameters_text_round_trips() -> None:
    text = format_parameters(
        "a girl, forest <lora:totoro:0.8>\nsecond line",
        'ugly, "bad"',
        {"Steps": 25, "Sampler": "DPM++ 2M Karras", "CFG scale": 7, "Seed": 42, "Lora hashes": "totoro: 0123456789ab"},
    )
    assert text.splitlines()[-1].startswith("Steps: 25, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42")
    assert parse_parameters(text) == {
        "Prompt": "a girl, forest <lora:totoro:0.8>\nsecond line",
        "Negative prompt": 'ugly, "bad"',
        "Steps": "25",
        "Sampler": "DPM++ 2M Karras",
        "CFG scale": "7",
        "Seed": "42",
        "Lora hashes": "totoro: 0123456789ab",
    }


def test_sampler_names_follow_a1111() -> None:
    assert canonical_sampler("euler a") == "Euler a"
    assert canonical_sampler("DPM++ 2M", scheduler="Karras") == "DPM++ 2M Karras"
    assert canonical_sampler("Euler a", scheduler="Karras") == "Euler a"
    with pytest.raises(ValueError, match="unknown sampler 'Warp'"):
        canonical_sampler("Warp")


def test_infer_params_accept_the_sample_stage_shorthand() -> None:
    params = InferParams(prompt="a girl", lora_id="lora-1", lora_scale=0.6, compare_base=True)
    assert params.loras == [LoraRef(id="lora-1", scale=0.6)]
    assert InferParams(prompt="a girl", lora_id=None).loras == []
    with pytest.raises(ValidationError, match="comparison grid needs a LoRA"):
        InferParams(prompt="a girl", compare_base=True)
    with pytest.raises(ValidationError, match="multiple of 8"):
        InferParams(prompt="a girl", width=500)


def test_service_limits_name_what_is_too_big() -> None:
    limits = InferenceSettings(_env_file=None, max_width=64, max_steps=10, max_images=2)
    with pytest.raises(LimitError, match="width 128 exceeds the limit of 64; steps 20 exceeds the limit of 10"):
        check_limits(GenerationParams(prompt="x", width=128, height=64, steps=20), limits)
    with pytest.raises(LimitError, match="number of images 3"):
        check_limits(GenerationParams(prompt="x", width=64, height=64, steps=5, seeds=[1, 2, 3]), limits)
