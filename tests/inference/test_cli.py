"""`ghibli-lora generate` on the embedded store."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from services.cli import app
from services.common.settings import Settings
from services.common.storage import make_store
from tests.inference.conftest import register_lora


def test_generate_writes_images_and_a_comparison(
    infer_env: None, tiny_sd_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GHIBLI_DATA_DIR", str(tmp_path / "data"))
    register_lora(make_store(Settings(_env_file=None)), tiny_sd_path, "lora-c", "ponyo", seed=4)
    out = tmp_path / "out"
    arguments = ["generate", "a fish girl", "--lora", "ponyo:0.7", "--seed", "1", "--seed", "2", "--steps", "2"]
    arguments += ["--width", "32", "--height", "32", "--sampler", "euler a", "--compare-base", "--out", str(out)]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in out.iterdir()) == ["comparison.png", "grid.png", "seed-1.png", "seed-2.png"]
    assert "Sampler: Euler a" in Image.open(out / "seed-1.png").info["parameters"]


def test_generate_rejects_bad_options_with_a_message(infer_env: None) -> None:
    result = CliRunner().invoke(app, ["generate", "x", "--width", "500"])
    assert result.exit_code == 2 and "multiple of 8" in result.output
