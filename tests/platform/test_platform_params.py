"""Job params take exactly what their schema says: numbers are numbers, pipeline stages are typed."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from services.api.app import create_app
from services.common.params import load_yaml
from services.common.settings import Settings
from services.inference.params import InferParams
from services.pipeline.config import PipelineConfig, load_config
from services.trainer.params import TrainParams

TOKEN = "params-token"


@pytest.mark.parametrize(
    ("body", "field", "kind"),
    [
        ({"lora_scale": False}, "lora_scale", "a boolean"),
        ({"steps": "3"}, "steps", "a string"),
        ({"seeds": [1, True]}, "seeds", "a boolean"),
        ({"loras": [{"id": "a", "scale": True}]}, "loras.0.scale", "a boolean"),
    ],
)
def test_a_boolean_or_string_where_a_number_is_due_is_refused(body: dict, field: str, kind: str) -> None:
    with pytest.raises(ValidationError) as raised:
        InferParams.model_validate({"prompt": "a meadow", **body})
    error = raised.value.errors()[0]
    assert ".".join(str(part) for part in error["loc"]) == field
    assert f"expected a number, not {kind}" in error["msg"]


def test_numbers_booleans_and_strings_still_pass_where_their_type_is_due() -> None:
    params = InferParams.model_validate({"prompt": "x", "steps": 3, "guidance_scale": 5, "seeds": [1, 2]})
    assert (params.steps, params.guidance_scale, params.seeds) == (3, 5.0, [1, 2])
    assert InferParams.model_validate({"prompt": "x", "lora_id": "a", "compare_base": True}).compare_base is True


def test_the_gateway_answers_422_naming_the_field_for_a_boolean_number(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, api_token=TOKEN)
    with TestClient(create_app(settings)) as client:
        answer = client.post(
            "/v1/jobs/infer",
            json={"prompt": "x", "lora_scale": True},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", "lora_scale"]


def test_yaml_numbers_in_exponent_form_are_numbers() -> None:
    values = load_yaml("learning_rate: 1e-4\nother: 2.5E+3\nwords: 1e4x\n")
    assert values == {"learning_rate": 1e-4, "other": 2500.0, "words": "1e4x"}
    params = TrainParams.model_validate({"dataset_id": "ds", "learning_rate": values["learning_rate"]})
    assert params.learning_rate == 1e-4


def test_pipeline_stages_are_typed_with_their_jobs_params(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as raised:
        PipelineConfig.model_validate({"name": "run", "train": {"max_steps": True}})
    assert raised.value.errors()[0]["loc"] == ("train", "max_steps")
    with pytest.raises(ValidationError) as raised:
        PipelineConfig.model_validate({"name": "run", "sample": {}})
    assert raised.value.errors()[0]["loc"] == ("sample", "prompt")

    schema = PipelineConfig.model_json_schema()
    train_stage = schema["$defs"]["TrainStage"]
    assert "dataset_id" not in train_stage["properties"] and "max_steps" in train_stage["properties"]

    config_file = tmp_path / "run.yaml"
    config_file.write_text("name: run\ntrain:\n  learning_rate: 5e-5\nsample:\n  prompt: a hill\n  lora_id: null\n")
    config = load_config(config_file)
    stages = {stage.name: stage for stage in config.active_stages()}
    assert config.stage_params(stages["train"], "ds-1", {}) == {"learning_rate": 5e-5, "dataset_id": "ds-1"}
    # An explicit null does not hide the LoRA the run trained.
    sample = config.stage_params(stages["sample"], "ds-1", {"train": {"lora_id": "lora-1"}})
    assert sample == {"prompt": "a hill", "lora_id": "lora-1"}
