from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.common.settings import Settings
from services.common.storage import LocalStore, make_store


def test_defaults_are_embedded(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)
    assert settings.embedded and settings.s3_endpoint is None
    assert isinstance(make_store(settings), LocalStore)


def test_environment_and_dotenv_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("GHIBLI_S3_BUCKET=from-dotenv\nGHIBLI_MAX_UPLOAD_BYTES=1000\n")
    monkeypatch.setenv("GHIBLI_MAX_UPLOAD_BYTES", "2000")  # the environment wins over .env
    settings = Settings(_env_file=env_file)
    assert settings.s3_bucket == "from-dotenv" and settings.max_upload_bytes == 2000


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("GHIBLI_S3_ENDPOINT", "http://minio:9000", "without http://"),
        ("GHIBLI_REDIS_URL", "localhost:6379", "must start with redis://"),
        ("GHIBLI_S3_BUCKET", "Bad_Bucket", "lowercase"),
        ("GHIBLI_MAX_UPLOAD_BYTES", "-1", "greater than 0"),
        ("GHIBLI_EMBEDDED_WORKERS", "many", "valid integer"),
    ],
)
def test_bad_values_fail_at_start_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=message):
        Settings(_env_file=None)
