"""Crawl job parameters (light imports: the API validates submissions with this model)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool

from services.common.datasets import Character
from services.common.params import DatasetId, JobParams

SourceName = Literal["simple_image_download", "bing"]


class CrawlParams(JobParams):
    dataset_id: DatasetId
    characters: list[Character] | None = Field(
        None, max_length=500, description="Characters to search for; default: the dataset's characters."
    )
    search: StrictBool = Field(
        True, description="Search for the characters; false imports only the URL list / archive."
    )
    sources: list[SourceName] = Field(
        default_factory=lambda: ["simple_image_download", "bing"],
        min_length=1,
        description="Search engines in order; a query that one finds nothing for falls back to the next.",
    )
    limit_per_character: int = Field(50, ge=1, le=10_000, description="Images per character unless it sets `limit`.")
    urls: list[str] = Field(
        default_factory=list,
        max_length=100_000,
        description="Image URLs to download as well: lines of a .txt list, or of a CSV with a `url` header.",
    )
    url_list_key: str | None = Field(None, description="Object key of a .txt/.csv URL list (csv: url,character,movie).")
    archive_key: str | None = Field(None, description="Object key of a zip of images to import.")
