"""A tiny BLIP, built once per session, that caption jobs load instead of the hub model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.captioner.blip import cached_captioner


@pytest.fixture(scope="session")
def tiny_blip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from services.common.tiny_models import build_tiny_blip

    return build_tiny_blip(tmp_path_factory.mktemp("models") / "tiny-blip")


@pytest.fixture
def tiny_blip_env(monkeypatch: pytest.MonkeyPatch, tiny_blip_path: Path) -> Iterator[Path]:
    """Caption jobs in this test load the tiny BLIP (GHIBLI_CAPTIONER_MODEL_ID points at its folder)."""
    monkeypatch.setenv("GHIBLI_CAPTIONER_MODEL_ID", str(tiny_blip_path))
    monkeypatch.setenv("GHIBLI_CAPTIONER_BATCH_SIZE", "2")
    cached_captioner.cache_clear()
    yield tiny_blip_path
    cached_captioner.cache_clear()
