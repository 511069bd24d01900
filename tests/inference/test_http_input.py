"""Numbers and strings no worker can use get a 422 naming the field on both HTTP services, never a 500."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app as create_gateway
from services.common.http_input import check_json_body
from services.common.settings import Settings
from services.common.storage import ObjectStore
from services.inference.app import create_app as create_inference
from services.inference.engine import Engine
from services.inference.settings import InferenceSettings

# Raw JSON, as an attacker or a buggy client sends it: Python's parser takes every one of these.
BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]
SURROGATE = '"\\ud800"'


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("gateway"))
    with TestClient(create_gateway(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def inference(
    tmp_path_factory: pytest.TempPathFactory,
    engine: Engine,
    lora_store: ObjectStore,
    inference_settings: InferenceSettings,
) -> Iterator[TestClient]:
    settings = Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("inference"), max_upload_bytes=1_000_000)
    with TestClient(create_inference(settings, inference_settings, engine, lora_store)) as client:
        yield client


def post_raw(client: TestClient, path: str, body: str) -> tuple[int, dict]:
    response = client.post(
        path, content=body.encode("utf-8", "surrogatepass"), headers={"content-type": "application/json"}
    )
    return response.status_code, response.json()


GATEWAY_CASES = [
    ("/v1/jobs/train", '{{"dataset_id": "ds-x", "learning_rate": {value}}}', ["body", "learning_rate"]),
    ("/v1/jobs/infer", '{{"prompt": "a", "guidance_scale": {value}}}', ["body", "guidance_scale"]),
    ("/v1/pipelines", '{{"name": "p", "train": {{"learning_rate": {value}}}}}', ["body", "train", "learning_rate"]),
]


@pytest.mark.parametrize(("path", "template", "location"), GATEWAY_CASES)
@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_gateway_refuses_non_finite_numbers_naming_the_field(
    gateway: TestClient, path: str, template: str, location: list, value: str
) -> None:
    status, body = post_raw(gateway, path, template.format(value=value))
    assert status == 422
    assert body["detail"][0]["loc"] == location
    assert body["detail"][0]["type"] == "finite_number"


@pytest.mark.parametrize(
    ("path", "body", "location"),
    [
        ("/v1/datasets", '{"name": ' + SURROGATE + "}", ["body", "name"]),
        ("/v1/datasets", '{"name": "x", "characters": [{"character": ' + SURROGATE + ', "movie": "m"}]}',
         ["body", "characters", 0, "character"]),
        ("/v1/jobs/crawl", '{"dataset_id": "ds-x", "urls": ["http://a.example/' + SURROGATE[1:-1] + '"]}',
         ["body", "urls", 0]),
    ],
)  # fmt: skip
def test_gateway_refuses_lone_surrogates_naming_the_field(
    gateway: TestClient, path: str, body: str, location: list
) -> None:
    status, answer = post_raw(gateway, path, body)
    assert status == 422
    assert answer["detail"][0]["loc"] == location
    assert answer["detail"][0]["type"] == "string_unicode"


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_inference_refuses_non_finite_numbers(inference: TestClient, value: str) -> None:
    for path, template in [
        ("/v1/generate", '{{"prompt": "a", "guidance_scale": {value}}}'),
        ("/sdapi/v1/txt2img", '{{"prompt": "a", "cfg_scale": {value}}}'),
    ]:
        status, body = post_raw(inference, path, template.format(value=value))
        assert status == 422, (path, body)
        assert body["detail"][0]["loc"][-1] in {"guidance_scale", "cfg_scale"}


def test_inference_refuses_a_surrogate_prompt(inference: TestClient) -> None:
    status, body = post_raw(inference, "/sdapi/v1/txt2img", '{"prompt": ' + SURROGATE + "}")
    assert status == 422 and body["detail"][0]["loc"] == ["body", "prompt"]


def test_inference_bounds_the_body(inference: TestClient) -> None:
    status, body = post_raw(inference, "/sdapi/v1/txt2img", json.dumps({"prompt": "a" * 2_000_000}))
    assert status == 413 and "limit" in body["detail"]


def test_a_422_does_not_echo_a_large_input(gateway: TestClient) -> None:
    huge_name = "n" * 500_000
    response = gateway.post("/v1/datasets", json={"name": huge_name})
    assert response.status_code == 422
    assert len(response.content) < 2_000
    assert response.json()["detail"][0]["loc"] == ["body", "name"]


def test_a_valid_body_still_reaches_the_route(gateway: TestClient) -> None:
    response = gateway.post("/v1/datasets", json={"name": "fine", "characters": [{"character": "Kiki", "movie": "m"}]})
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (b'{"a": 1.5, "b": [1, "x"]}', []),
        (b"not json", []),  # FastAPI reports malformed JSON itself
        (b'{"a": NaN}', [["body", "a"]]),
        (b'{"\\ud800": 1}', [["body", "\ud800"]]),
        (b'{"a": "\\ud83d\\ude00"}', []),  # a proper pair is an emoji, not an error
        (b'{"a": 1' + b"0" * 5000 + b"}", [["body"]]),
    ],
)
def test_check_json_body(body: bytes, errors: list) -> None:
    assert [error["loc"] for error in check_json_body(body)] == errors


def test_the_check_reports_a_bounded_number_of_errors(tmp_path: Path) -> None:
    body = json.dumps([float("nan")] * 1000).encode()
    assert 0 < len(check_json_body(body)) <= 20


def test_a1111_batch_is_capped_before_its_seeds_are_listed(inference: TestClient) -> None:
    response = inference.post("/sdapi/v1/txt2img", json={"prompt": "a", "batch_size": 5_000_000, "n_iter": 2})
    assert response.status_code == 422
    assert "10000000" in response.json()["detail"] and "batch_size × n_iter" in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "location"),
    [
        ("/v1/jobs/train", {"dataset_id": "ds-x", "seed": 1e30}, ["body", "seed"]),
        ("/v1/jobs/train", {"dataset_id": "ds-x", "validation_seeds": [-1]}, ["body", "validation_seeds", 0]),
        ("/v1/jobs/train", {"dataset_id": "ds-x", "validation_seeds": [2**70]}, ["body", "validation_seeds", 0]),
        ("/v1/jobs/filter", {"dataset_id": "ds-x", "background": [999, -1, 0]}, ["body", "background", 0]),
    ],
)
def test_values_no_worker_can_use_are_refused_at_submission(
    gateway: TestClient, path: str, body: dict, location: list
) -> None:
    response = gateway.post(path, json=body)
    assert response.status_code == 422
    assert location in [error["loc"] for error in response.json()["detail"]]


def test_params_refuse_nan_from_any_caller() -> None:
    from pydantic import ValidationError

    from services.trainer.params import TrainParams

    with pytest.raises(ValidationError, match="finite"):
        TrainParams.model_validate({"dataset_id": "ds-x", "learning_rate": float("nan")})


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims `width`×`height` (no pixel data): what a decompression bomb shows first."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"tEXt", b"parameters\x00x") + chunk(b"IEND", b"")


def test_png_info_refuses_a_bomb_with_a_422(inference: TestClient) -> None:
    image = base64.b64encode(png_header_only(30_000, 30_000)).decode()
    response = inference.post("/sdapi/v1/png-info", json={"image": image})
    assert response.status_code == 422
    assert "too large" in response.json()["detail"]


def test_an_infer_job_past_the_services_caps_is_refused_at_submission(gateway: TestClient) -> None:
    response = gateway.post("/v1/jobs/infer", json={"prompt": "a", "width": 2048, "height": 512})
    assert response.status_code == 422
    assert "width 2048 exceeds the limit of 1024" in response.json()["detail"]
    pipeline = gateway.post("/v1/pipelines", json={"name": "p", "sample": {"prompt": "a", "steps": 120}})
    assert pipeline.status_code == 422
    assert "steps 120 exceeds the limit of 100" in json.dumps(pipeline.json()["detail"])
