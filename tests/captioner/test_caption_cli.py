"""`ghibli-lora caption` on a local folder, and its --api submission."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.cli import app
from tests.captioner.helpers import png


def test_local_folder_gets_exports_and_a_rerun_reuses_the_captions(tiny_blip_path: Path, tmp_path: Path) -> None:
    source, output = tmp_path / "images", tmp_path / "out"
    for index, folder in enumerate(["Kiki", "Kiki", "Jiji"]):
        (source / folder).mkdir(parents=True, exist_ok=True)
        (source / folder / f"picture {index}.png").write_bytes(png((60 * index, 90, 30)))
    (source / "notes.txt").write_text("not an image")
    arguments = ["caption", str(source), str(output), "--model", str(tiny_blip_path), "--trigger", "ghblstyle"]

    first = CliRunner().invoke(app, [*arguments, "--batch-size", "2"])
    assert first.exit_code == 0, first.output
    entries = json.loads((output / "captions.json").read_text())
    assert [entry["character"] for entry in entries] == ["Jiji", "Kiki", "Kiki"]
    assert all(entry["text"].startswith("ghblstyle, ") for entry in entries)
    assert len(list((output / "imagefolder").glob("*.png"))) == 3
    assert len(list((output / "kohya").glob("*.txt"))) == 3
    assert (output / "captions.csv").read_text().splitlines()[0] == "image,text"

    cache = next((output / "raw").glob("*.json"))
    before = cache.stat().st_mtime_ns
    second = CliRunner().invoke(app, [*arguments, "--subject", "a small witch"])
    assert second.exit_code == 0, second.output
    assert cache.stat().st_mtime_ns == before  # every caption came from the cache, BLIP never ran


def test_api_mode_submits_a_caption_job(monkeypatch: pytest.MonkeyPatch) -> None:
    submitted: dict[str, Any] = {}

    class FakeClient:
        def __init__(self, base_url: str, token: str | None = None) -> None:
            submitted["url"] = base_url

        def submit_job(self, job_type: str, params: dict[str, Any]) -> str:
            submitted.update(job_type=job_type, params=params)
            return "job-1"

        def follow(self, job_id: str) -> dict[str, Any]:
            return {"state": "succeeded", "result": {"count": 3}}

    monkeypatch.setattr("services.common.client.ApiClient", FakeClient)
    arguments = ["caption", "--api", "http://api.test", "--dataset", "ds-1", "--prompt", "an illustration of"]
    result = CliRunner().invoke(app, [*arguments, "--name", "Kiki", "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    assert submitted["job_type"] == "caption"
    assert submitted["params"]["dataset_id"] == "ds-1"
    assert submitted["params"]["prompt"] == "an illustration of"
    assert submitted["params"]["extra_names"] == ["Kiki"]
    assert submitted["params"]["batch_size"] == 8


def test_bad_options_exit_with_a_message(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["caption", str(tmp_path), str(tmp_path / "out"), "--num-beams", "0"])
    assert result.exit_code == 2
    assert "num_beams" in result.output
