"""Shared fixtures: a real S3 server (moto, over HTTP), real Redis, stores and tiny models."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.settings import Settings
from services.common.storage import LocalStore, ObjectStore, S3Store
from tests.support import free_port

pytest_plugins = ["tests.processes"]

REDIS_URL = os.environ.get("GHIBLI_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """host:port of an S3 server on loopback: the one scripts/test.sh started, else moto in-process."""
    if endpoint := os.environ.get("GHIBLI_TEST_S3_ENDPOINT"):
        yield endpoint
        return
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Real Redis (started by .ci/run); a test that needs it fails loudly when it is absent."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis at {REDIS_URL} is required (start it with `redis-server`): {error}")
    return REDIS_URL


@pytest.fixture
def s3_settings(tmp_path: Path, s3_endpoint: str) -> Settings:
    """Settings pointing at the S3 server with a fresh bucket per test."""
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        s3_endpoint=s3_endpoint,
        s3_bucket=f"test-{uuid.uuid4().hex[:12]}",
    )


@pytest.fixture
def local_settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data")


@pytest.fixture
def s3_store(s3_settings: Settings) -> ObjectStore:
    return S3Store(s3_settings)


@pytest.fixture
def local_store(local_settings: Settings) -> ObjectStore:
    return LocalStore(local_settings.data_dir / "objects")


@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest) -> ObjectStore:
    """Runs a test once per backend."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from services.common.tiny_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny SD and BLIP folders, as the offline demo builds them."""
    from services.pipeline.demo import build_demo_models

    return build_demo_models(tmp_path_factory.mktemp("demo-models"))
