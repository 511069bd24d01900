from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.crawler.settings import CrawlerSettings
from tests.crawler.hosts import MisbehavingServer

# Small limits so every misbehaviour is cheap to provoke; loopback allowed for the test server only.
TEST_LIMITS = {
    "ssrf_allow": ["127.0.0.1/32"],
    "retries": 1,
    "backoff_base_s": 0.01,
    "backoff_max_s": 2.0,
    "connect_timeout_s": 1.0,
    "read_timeout_s": 1.5,  # generous: two shared cores under load must not time out a good image
    "total_timeout_s": 2.0,
    "max_bytes": 1024 * 1024,
    "max_pixels": 1_000_000,
    "concurrency": 8,
}


@pytest.fixture
def crawler_settings() -> CrawlerSettings:
    return CrawlerSettings(_env_file=None, **TEST_LIMITS)


@pytest.fixture
def crawler_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same limits for code that reads CrawlerSettings from the environment (the job handler, the CLI)."""
    import json

    for name, value in TEST_LIMITS.items():
        monkeypatch.setenv(
            f"GHIBLI_CRAWLER_{name.upper()}", json.dumps(value) if isinstance(value, list) else str(value)
        )


@pytest.fixture
def hosts() -> Iterator[MisbehavingServer]:
    server = MisbehavingServer().start()
    yield server
    server.stop()
