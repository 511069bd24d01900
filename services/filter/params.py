"""Filter job parameters (light imports only: the API validates submissions with this model)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool

from services.common.params import Channel, DatasetId, JobParams

NormaliseMode = Literal["center-crop", "pad", "resize"]


class FilterOptions(JobParams):
    """How images are normalised and which ones are dropped; shared by the job and the CLI."""

    size: int = Field(512, ge=64, le=2048, description="Side of the square output image.")
    mode: NormaliseMode = Field("center-crop", description="center-crop, pad (letterbox) or resize (stretch).")
    min_side: int = Field(256, ge=1, le=4096, description="Images whose shorter side is smaller are dropped.")
    output_format: Literal["jpeg", "png"] = "jpeg"
    jpeg_quality: int = Field(95, ge=50, le=100)
    background: tuple[Channel, Channel, Channel] = Field(
        (255, 255, 255), description="RGB that transparent pixels and padding are painted with."
    )
    near_duplicate_distance: int = Field(
        8,
        ge=0,
        le=32,
        description="Largest Hamming distance between 64-bit perceptual hashes (of the picture, its frameless "
        "content or their mirror images) at which two images are near duplicates without further check.",
    )
    keypoint_match_distance: int = Field(
        20,
        ge=0,
        le=32,
        description="Pairs whose hashes (picture, frameless content, mirrored) are further apart than "
        "near_duplicate_distance but within this are near duplicates when their keypoints agree on one "
        "move/scale/turn over a good part of both (cropped, framed, turned copies); 0 switches this off.",
    )
    hash_method: Literal["phash", "dhash", "whash", "average_hash"] = "phash"
    blur_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Blur score (0 sharp … 1 blurry: the share of edge contrast a re-blur of the 512-px grey copy "
        "keeps) above which an image is blurry.",
    )
    uniform_std_threshold: float = Field(
        6.0, ge=0, description="Grey standard deviation (0–255) below which an image is near-uniform."
    )
    uniform_entropy_threshold: float = Field(
        0.5,
        ge=0,
        le=8,
        description="Grey histogram entropy (bits) below which an image is near-uniform; two-tone art has about 1.",
    )
    text_detector: Literal["db", "tesseract", "none"] = Field(
        "db",
        description="db: PP-OCRv4's text-detection model (finds subtitles, captions, corner addresses and "
        "translucent watermarks; ~24 ms a picture on one core); tesseract: OCR (reads words, misses stylised text); "
        "none.",
    )
    text_prescreen: StrictBool = Field(
        False,
        description="Only run the text detector on pictures whose edges hold text-like lines (~1 ms): much faster "
        "on crawls with little text, but it lets translucent watermarks through.",
    )
    text_max_words: int = Field(
        1,
        ge=1,
        description="Images with at least this many text lines (db) or recognised words (tesseract) are dropped.",
    )
    text_max_area: float = Field(
        0.02, gt=0, le=1, description="Images whose recognised text boxes cover this fraction are dropped."
    )
    max_per_character: int | None = Field(
        None, ge=1, description="Keep at most this many images per character (the sharpest)."
    )


class FilterParams(FilterOptions):
    dataset_id: DatasetId
