"""The inference service behind the gateway's token: every route but /healthz, Bearer or A1111's Basic."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import webuiapi
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.common.auth import presented_token
from services.common.settings import Settings
from services.common.storage import ObjectStore
from services.inference.app import create_app
from services.inference.engine import Engine
from services.inference.settings import InferenceSettings
from tests.support import serve_in_thread

TOKEN = "inference-s3cret"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def secured_app(
    tmp_path_factory: pytest.TempPathFactory,
    engine: Engine,
    lora_store: ObjectStore,
    inference_settings: InferenceSettings,
) -> object:
    settings = Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("auth-data"), api_token=SecretStr(TOKEN))
    return create_app(settings, inference_settings, engine, lora_store)


@pytest.fixture(scope="module")
def client(secured_app: object) -> Iterator[TestClient]:
    with TestClient(secured_app) as test_client:  # type: ignore[arg-type]
        yield test_client


def test_every_route_but_the_healthcheck_wants_the_token(secured_app: object, client: TestClient) -> None:
    routes = [route for route in secured_app.routes if isinstance(route, APIRoute)]  # type: ignore[attr-defined]
    guarded = [(method, route.path) for route in routes if route.path != "/healthz" for method in route.methods]
    assert {"/v1/generate", "/sdapi/v1/txt2img", "/sdapi/v1/options", "/sdapi/v1/refresh-loras"} <= {
        path for _, path in guarded
    }
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": basic("lab", "wrong")}):
        for method, path in guarded:
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert "Bearer" in response.headers["www-authenticate"]
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/openapi.json").status_code == 200  # the schema holds no secrets


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", basic("lab", TOKEN), basic("", TOKEN)])
def test_the_token_opens_it_as_bearer_or_basic(client: TestClient, authorization: str) -> None:
    response = client.get("/sdapi/v1/loras", headers={"Authorization": authorization})
    assert response.status_code == 200, response.text


def test_a_webuiapi_client_with_set_auth_generates(secured_app: object) -> None:
    with serve_in_thread(secured_app) as port:
        api = webuiapi.WebUIApi(host="127.0.0.1", port=port)
        with pytest.raises(RuntimeError):
            api.txt2img(prompt="a meadow", steps=2, width=32, height=32, seed=1)
        api.set_auth("lab", TOKEN)
        result = api.txt2img(prompt="a meadow", steps=2, width=32, height=32, seed=1)
        assert result.image.size == (32, 32)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        (basic("u", "p:q"), "p:q"),
        ("Basic !!!", None),
        ("Basic " + base64.b64encode(b"no-colon").decode(), None),
        ("Digest abc", None),
    ],
)
def test_the_token_a_header_presents(header: str | None, token: str | None) -> None:
    assert presented_token(header) == token
