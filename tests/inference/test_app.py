"""The HTTP service under uvicorn on loopback, driven by the `webuiapi` client and by plain HTTP."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import webuiapi
from PIL import Image

from services.common.settings import Settings
from services.common.storage import ObjectStore
from services.inference.app import create_app
from services.inference.engine import Engine
from services.inference.settings import InferenceSettings
from tests.support import serve_in_thread

SMALL = {"steps": 3, "width": 32, "height": 32}


@pytest.fixture(scope="module")
def app_state(
    tmp_path_factory: pytest.TempPathFactory,
    engine: Engine,
    lora_store: ObjectStore,
    inference_settings: InferenceSettings,
) -> Iterator[dict]:
    settings = Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("inference-data"))
    app = create_app(settings, inference_settings, engine, lora_store)
    with serve_in_thread(app) as port:
        yield {"url": f"http://127.0.0.1:{port}", "port": port, "app": app}


@pytest.fixture
def url(app_state: dict) -> str:
    return app_state["url"]


@pytest.fixture
def webui(app_state: dict) -> webuiapi.WebUIApi:
    return webuiapi.WebUIApi(host="127.0.0.1", port=app_state["port"])


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_webuiapi_txt2img_with_a_lora_tag(webui: webuiapi.WebUIApi) -> None:
    result = webui.txt2img(
        prompt="<lora:totoro:0.8> a girl in a forest",
        negative_prompt="blurry",
        seed=5,
        batch_size=2,
        cfg_scale=6,
        sampler_name="Euler a",
        **SMALL,
    )
    assert len(result.images) == 2 and result.images[0].size == (32, 32)
    assert result.info["all_seeds"] == [5, 6] and result.info["sampler_name"] == "Euler a"
    infotext = result.images[0].info["parameters"]
    assert infotext.startswith("a girl in a forest <lora:totoro:0.8>\nNegative prompt: blurry\nSteps: 3,")
    assert "Seed: 5, Size: 32x32" in infotext and "Lora hashes: totoro: " in infotext
    assert result.parameters["prompt"] == "<lora:totoro:0.8> a girl in a forest"

    again = webui.txt2img(prompt="<lora:totoro:0.8> a girl in a forest", negative_prompt="blurry", seed=5,
                          cfg_scale=6, sampler_name="Euler a", **SMALL)  # fmt: skip
    weaker = webui.txt2img(prompt="<lora:totoro:0.2> a girl in a forest", negative_prompt="blurry", seed=5,
                           cfg_scale=6, sampler_name="Euler a", **SMALL)  # fmt: skip
    assert np.array_equal(pixels(again.image), pixels(result.images[0]))
    assert not np.array_equal(pixels(weaker.image), pixels(result.images[0]))


def test_parameters_round_trip_through_png_info(webui: webuiapi.WebUIApi) -> None:
    image = webui.txt2img(prompt="<lora:kiki:0.5> a cat", negative_prompt="dark", seed=9, **SMALL).image
    result = webui.png_info(image)
    assert result.info == image.info["parameters"]
    parsed = result.json["parameters"]
    assert parsed["Prompt"] == "a cat <lora:kiki:0.5>" and parsed["Negative prompt"] == "dark"
    assert (parsed["Seed"], parsed["Steps"], parsed["Size"], parsed["Sampler"]) == ("9", "3", "32x32", "Euler a")
    assert parsed["Lora hashes"].startswith("kiki: ")


def test_webuiapi_listings_and_options(webui: webuiapi.WebUIApi, inference_settings: InferenceSettings) -> None:
    assert {lora["name"] for lora in webui.get_loras()} >= {"totoro", "kiki"}
    models = webui.get_sd_models()
    assert models[0]["title"] == "tiny-sd" and models[0]["filename"] == inference_settings.base_model
    assert "DPM++ 2M Karras" in {sampler["name"] for sampler in webui.get_samplers()}
    assert webui.util_get_current_model() == "tiny-sd"
    assert webui.get_progress()["state"]["job_count"] == 0


def test_own_api_stores_images_by_content(url: str, lora_store: ObjectStore) -> None:
    body = {"prompt": "a castle", "seeds": [1, 2], "loras": [{"id": "totoro", "scale": 0.7}], **SMALL}
    first = httpx.post(f"{url}/v1/generate", json=body, timeout=60).json()
    again = httpx.post(f"{url}/v1/generate", json={**body, "return_base64": True}, timeout=60).json()
    keys = [image["key"] for image in first["images"]]
    assert keys == [image["key"] for image in again["images"]]
    assert all(key.startswith("images/generated/") and lora_store.exists(key) for key in keys)
    assert [image["seed"] for image in first["images"]] == [1, 2] and first["loras"] == [{"id": "lora-a", "scale": 0.7}]
    assert base64.b64decode(again["images"][0]["base64"]) == lora_store.get_bytes(keys[0])

    png = httpx.post(f"{url}/v1/generate", json={**body, "seeds": [1]}, headers={"Accept": "image/png"}, timeout=60)
    assert png.headers["content-type"] == "image/png" and png.content == lora_store.get_bytes(keys[0])


def test_comparison_grid(url: str, lora_store: ObjectStore) -> None:
    body = {"prompt": "a castle", "seeds": [1, 2], "lora_id": "totoro", "compare_scales": [0.5, 1.0], **SMALL}
    answer = httpx.post(f"{url}/v1/compare", json=body, timeout=60).json()
    assert answer["rows"] == ["no LoRA", "totoro x0.5", "totoro x1"]
    grid = Image.open(io.BytesIO(lora_store.get_bytes(answer["key"])))
    assert grid.height > 3 * 32 and grid.width > 2 * 32


def test_concurrent_compatible_requests_share_pipeline_calls(url: str, app_state: dict, engine: Engine) -> None:
    body = {"prompt": "a castle", "return_base64": True, **SMALL}
    calls_before = engine.render_calls
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda seed: httpx.post(f"{url}/v1/generate", json={**body, "seeds": [seed]}, timeout=60), range(4)
            )
        )
    assert all(answer.status_code == 200 for answer in answers)
    assert engine.render_calls - calls_before < 4
    alone = httpx.post(f"{url}/v1/generate", json={**body, "seeds": [2]}, timeout=60).json()
    batched = Image.open(io.BytesIO(base64.b64decode(answers[2].json()["images"][0]["base64"])))
    single = Image.open(io.BytesIO(base64.b64decode(alone["images"][0]["base64"])))
    assert np.abs(pixels(batched) - pixels(single)).max() <= 1


@pytest.mark.parametrize(
    ("path", "body", "code", "message"),
    [
        ("/v1/generate", {"prompt": "x", "width": 128, "steps": 3}, 422, "width 128 exceeds the limit of 64"),
        ("/v1/generate", {"prompt": "x", "width": 30}, 422, "multiple of 8"),
        ("/v1/generate", {"prompt": "x", "steps": 0}, 422, "greater than or equal to 1"),
        ("/v1/generate", {"width": 32}, 422, "Field required"),
        ("/v1/generate", {"prompt": "x", "sampler": "Warp"}, 422, "unknown sampler 'Warp'"),
        ("/v1/generate", {"prompt": "x", "loras": [{"id": "nobody"}], **SMALL}, 404, "no LoRA 'nobody'"),
        ("/v1/generate", {"prompt": "x" * 3000}, 422, "at most 2000 characters"),
        ("/v1/compare", {"prompt": "x", **SMALL}, 422, "comparison grid needs a LoRA"),
        ("/sdapi/v1/txt2img", {"prompt": "<lora:nobody:1> x", **SMALL}, 404, "no LoRA 'nobody'"),
        ("/sdapi/v1/txt2img", {"prompt": "<lora:totoro:much> x", **SMALL}, 422, "not a number"),
        ("/sdapi/v1/txt2img", {"prompt": "x", "batch_size": 5, **SMALL}, 422, "number of images 5 exceeds"),
        ("/sdapi/v1/txt2img", {"prompt": "x", "sampler_name": "Warp", **SMALL}, 422, "unknown sampler"),
        ("/sdapi/v1/txt2img", {"prompt": "x", "enable_hr": True}, 422, "hires fix"),
        ("/sdapi/v1/txt2img", {"prompt": "x", "steps": "many"}, 422, "valid integer"),
        ("/sdapi/v1/png-info", {"image": "not base64!"}, 422, "not a base64 image"),
        ("/sdapi/v1/png-info", {"image": base64.b64encode(b"plain text").decode()}, 422, "not a base64 image"),
        ("/sdapi/v1/options", {"sd_model_checkpoint": "sdxl"}, 422, "serves 'tiny-sd' only"),
    ],
)
def test_bad_requests_get_4xx_with_a_message(url: str, path: str, body: dict, code: int, message: str) -> None:
    answer = httpx.post(f"{url}{path}", json=body, timeout=60)
    assert answer.status_code == code, answer.text
    assert message in answer.text


def test_a_full_queue_answers_429_with_retry_after(url: str, engine: Engine, inference_settings) -> None:
    body = {"prompt": "a castle", "seeds": [1], "width": 32, "height": 32}
    sent = inference_settings.max_queued_requests + 3  # more than one running call plus a full queue
    engine._lock.acquire()  # hold the pipeline so requests pile up
    try:
        with ThreadPoolExecutor(sent) as pool:
            # Each asks for a different step count, so none can join another's batch.
            futures = [
                pool.submit(httpx.post, f"{url}/v1/generate", json={**body, "steps": steps}, timeout=60)
                for steps in range(1, sent + 1)
            ]
            deadline = time.monotonic() + 20
            while sum(future.done() for future in futures) < sent - inference_settings.max_queued_requests - 1:
                assert time.monotonic() < deadline, "no request was refused"
                time.sleep(0.05)
            engine._lock.release()
            answers = [future.result() for future in futures]
    finally:
        if engine._lock.locked():
            engine._lock.release()
    refused = [answer for answer in answers if answer.status_code == 429]
    # One request may already be running when the queue fills, or the queue may fill before it starts.
    assert (
        sent - inference_settings.max_queued_requests - 1
        <= len(refused)
        <= sent - inference_settings.max_queued_requests
    )
    assert all(int(answer.headers["Retry-After"]) >= 1 and "queue is full" in answer.text for answer in refused)
    assert all(answer.status_code == 200 for answer in answers if answer not in refused)


def test_healthz(url: str) -> None:
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok", "model": "tiny-sd", "device": "cpu", "queued": 0}


def test_app_loads_its_model_from_settings(tmp_path: Path, inference_settings: InferenceSettings, lora_store) -> None:
    from fastapi.testclient import TestClient

    app = create_app(Settings(_env_file=None, data_dir=tmp_path), inference_settings, store=lora_store)
    with TestClient(app) as client:
        answer = client.post("/sdapi/v1/txt2img", json={"prompt": "a cat", "seed": 3, **SMALL})
    assert answer.status_code == 200 and len(answer.json()["images"]) == 1


def test_metrics_count_requests_and_generated_images(url: str) -> None:
    assert httpx.post(f"{url}/v1/generate", json={"prompt": "a meadow", **SMALL}, timeout=120).is_success
    metrics = httpx.get(f"{url}/metrics/").text
    assert 'ghibli_images_processed_total{stage="inference"}' in metrics
    assert 'ghibli_http_request_duration_seconds_count{method="POST",route="/v1/generate",status="200"}' in metrics
