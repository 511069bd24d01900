from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.common.settings import Settings


@pytest.fixture
def api_settings(s3_settings: Settings) -> Settings:
    """S3-backed, embedded jobs, a small upload cap so limits are cheap to test."""
    return s3_settings.model_copy(update={"max_upload_bytes": 2 * 1024 * 1024})


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as test_client:
        yield test_client
