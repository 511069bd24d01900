"""AUTOMATIC1111 conventions: `<lora:NAME:weight>` prompt tags and the PNG `parameters` text."""

from __future__ import annotations

import re
from collections.abc import Mapping

from services.inference.params import LoraRef

_LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]*))?(?::[^>]*)?>")
# `Key: value` pairs of the last line; a value is either quoted (may hold commas) or runs to the next comma.
_SETTING = re.compile(r'\s*([\w ][\w \-/]*): ("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


class PromptError(ValueError):
    """A prompt tag that cannot be honoured; the message says which."""


def extract_lora_tags(prompt: str) -> tuple[str, list[LoraRef]]:
    """Remove `<lora:NAME:weight>` tags from the prompt; return the clean prompt and the LoRAs asked for."""
    refs: dict[str, LoraRef] = {}
    for match in _LORA_TAG.finditer(prompt):
        name, weight = match.group(1).strip(), (match.group(2) or "1").strip()
        try:
            scale = float(weight)
        except ValueError:
            raise PromptError(f"LoRA tag {match.group(0)!r} has a weight that is not a number") from None
        try:
            refs[name] = LoraRef(id=name, scale=scale)
        except ValueError as error:
            raise PromptError(f"LoRA tag {match.group(0)!r}: {error}") from None
    clean = re.sub(r"\s+,", ",", re.sub(r"\s{2,}", " ", _LORA_TAG.sub("", prompt))).strip(" ,")
    return clean, list(refs.values())


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' if ("," in value or '"' in value) else value


def format_parameters(prompt: str, negative_prompt: str, settings: Mapping[str, object]) -> str:
    """The infotext A1111 writes into a PNG's `parameters` chunk (and shows under an image)."""
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    lines.append(", ".join(f"{key}: {_quote(str(value))}" for key, value in settings.items() if value is not None))
    return "\n".join(lines)


def parse_parameters(text: str) -> dict[str, str]:
    """Inverse of format_parameters: `Prompt`, `Negative prompt` and every `Key: value` of the last line."""
    lines = text.strip().split("\n")
    settings_line = lines.pop() if len(lines) > 1 and _SETTING.match(lines[-1]) else ""
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    for line in lines:
        if negative_lines or line.startswith("Negative prompt:"):
            negative_lines.append(line.removeprefix("Negative prompt:").strip() if not negative_lines else line)
        else:
            prompt_lines.append(line)
    parsed = {"Prompt": "\n".join(prompt_lines), "Negative prompt": "\n".join(negative_lines)}
    for key, value in _SETTING.findall(settings_line):
        if value.startswith('"') and value.endswith('"') and len(value) > 1:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        parsed[key.strip()] = value.strip()
    return parsed
