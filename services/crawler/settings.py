"""Crawler settings (`GHIBLI_CRAWLER_*`): network limits, politeness and the SSRF allow-list."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.images import DEFAULT_MAX_PIXELS


class CrawlerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GHIBLI_CRAWLER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    concurrency: int = Field(64, ge=1, le=1024, description="Downloads in flight at once.")
    per_host_concurrency: int = Field(8, ge=1, description="Downloads in flight to one host at once.")
    per_host_delay_s: float = Field(0.0, ge=0, description="Least time between two request starts to one host.")
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(15.0, gt=0, description="Longest silence while reading a response.")
    total_timeout_s: float = Field(60.0, gt=0, description="Longest one attempt may take, slow drips included.")
    max_bytes: int = Field(20 * 1024 * 1024, gt=0, description="Largest image body; longer downloads are cut off.")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0, description="Largest decoded image (width × height).")
    max_redirects: int = Field(5, ge=0)
    retries: int = Field(3, ge=0, description="Extra attempts after a 429, 5xx, rate-limit 403 or timeout.")
    backoff_base_s: float = Field(0.5, ge=0, description="First retry waits about this long, then doubling.")
    backoff_max_s: float = Field(30.0, ge=0, description="Cap on one backoff wait, Retry-After included.")
    user_agent: str = Field("ghibli-lora-crawler/0.1 (+https://github.com/ghibli-lora)")
    respect_noai: bool = Field(True, description="Skip responses carrying `X-Robots-Tag: noai` or `noimageai`.")
    ssrf_allow: list[str] = Field(
        default_factory=list,
        description="Addresses or CIDR networks exempt from the SSRF guard, e.g. `127.0.0.1/32` for a test server.",
    )
    search_oversample: float = Field(
        2.0, ge=1.0, description="Search results requested per wanted image (downloads fail, duplicates happen)."
    )
    manifest_flush_every: int = Field(200, ge=1, description="Manifest records buffered before a part is written.")
