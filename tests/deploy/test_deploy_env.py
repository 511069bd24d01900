"""`.env.example` documents every setting, names no setting that does not exist, and its values validate."""

from __future__ import annotations

import re

import pytest
from pydantic_settings import BaseSettings

from tests.deploy.deploy_files import ROOT, SERVICE_PACKAGES, all_setting_env_names, env_names, settings_classes

ENV_EXAMPLE = ROOT / ".env.example"
# `KEY=value` or a commented default `# KEY=value`.
ENTRY = re.compile(r"^(?:#\s*)?([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def documented_names() -> set[str]:
    return set(ENTRY.findall(ENV_EXAMPLE.read_text()))


def test_settings_classes_are_found() -> None:
    assert "GHIBLI_REDIS_URL" in all_setting_env_names()


@pytest.mark.parametrize("settings_class", settings_classes(), ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_every_setting_is_documented(settings_class: type[BaseSettings]) -> None:
    missing = sorted(env_names(settings_class) - documented_names())
    assert not missing, f"add these to .env.example: {missing}"


def test_every_documented_ghibli_name_is_a_setting() -> None:
    # A service whose settings module is not written yet may already be named here.
    unwritten = [name for name in SERVICE_PACKAGES if not (ROOT / "services" / name / "settings.py").exists()]
    absent_prefixes = tuple(f"GHIBLI_{name.upper()}_" for name in unwritten)
    known = all_setting_env_names()
    unknown = sorted(
        name
        for name in documented_names()
        if name.startswith("GHIBLI_") and name not in known and not name.startswith(absent_prefixes)
    )
    assert not unknown, f".env.example names settings that do not exist (typo or removed): {unknown}"


def test_the_model_hub_ids_and_hf_cache_are_documented() -> None:
    text = ENV_EXAMPLE.read_text()
    for hub_id in ("stable-diffusion-v1-5/stable-diffusion-v1-5", "Salesforce/blip-image-captioning-large"):
        assert hub_id in text
    assert "HF_HOME" in documented_names()


@pytest.mark.parametrize("settings_class", settings_classes(), ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_the_example_values_validate(settings_class: type[BaseSettings], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in all_setting_env_names():
        monkeypatch.delenv(name, raising=False)
    settings_class(_env_file=ENV_EXAMPLE)  # raises a ValidationError naming the bad line
