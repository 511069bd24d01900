"""Platform settings shared by every service.

Every field is read from a `GHIBLI_*` environment variable or from `.env`; each service keeps
its own extra settings in `services/<name>/settings.py` with its own prefix.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GHIBLI_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    data_dir: Path = Field(Path("./data"), description="Root of the embedded object store and scratch space.")
    s3_endpoint: str | None = Field(
        None, description="host:port of MinIO/S3; unset means the embedded filesystem store."
    )
    s3_access_key: str = "minioadmin"
    s3_secret_key: SecretStr = SecretStr("minioadmin")
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    s3_bucket: str = Field("ghibli", description="Bucket holding every image and artifact.")
    redis_url: str | None = Field(
        None, description="Celery broker and lease store; unset means in-process (embedded) jobs."
    )
    api_token: SecretStr | None = Field(
        None,
        description="When set, the gateway's /v1 routes and every inference route need `Authorization: Bearer "
        "<token>` (or HTTP Basic with the token as password, as AUTOMATIC1111 clients send).",
    )
    max_upload_bytes: int = Field(50 * 1024 * 1024, gt=0, description="Largest request body the API accepts.")
    scratch_min_free_bytes: int = Field(
        2 * 2**30, ge=0, description="A job refuses to start its scratch work when the disk under it has less free."
    )
    upload_decode_threads: int = Field(
        2, ge=1, le=64, description="Uploaded images the gateway checks (decodes) at once, off its event loop."
    )
    embedded_workers: int = Field(2, ge=1, description="Threads that run jobs in embedded mode.")
    job_lease_seconds: float = Field(
        60.0, gt=0, description="A running job whose worker stops heartbeating this long is retaken."
    )
    requeue_after_seconds: float = Field(
        300.0,
        gt=0,
        description="A job queued this long (or running without a heartbeat this long) whose broker message is gone"
        " (Redis restarted without its AOF) is sent again by the gateway.",
    )
    broker_visibility_timeout: float = Field(
        120.0, gt=0, description="Seconds before an unacknowledged task is redelivered."
    )
    task_max_retries: int = Field(5, ge=0, description="Retries for transient faults.")
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="A Celery worker serves Prometheus /metrics on this port when set."
    )

    @field_validator("s3_endpoint")
    @classmethod
    def _endpoint_has_no_scheme(cls, value: str | None) -> str | None:
        if value and "://" in value:
            raise ValueError("GHIBLI_S3_ENDPOINT is host:port, without http:// (use GHIBLI_S3_SECURE)")
        return value or None

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("GHIBLI_REDIS_URL must start with redis://, rediss:// or unix://")
        return value or None

    @model_validator(mode="after")
    def _bucket_name_is_valid(self) -> Settings:
        bucket = self.s3_bucket
        if not (3 <= len(bucket) <= 63) or not bucket.replace("-", "").isalnum() or not bucket.islower():
            raise ValueError("GHIBLI_S3_BUCKET must be 3-63 lowercase letters, digits or '-'")
        return self

    @property
    def embedded(self) -> bool:
        """True when jobs run in-process instead of through Celery."""
        return self.redis_url is None


@lru_cache
def get_settings() -> Settings:
    return Settings()
