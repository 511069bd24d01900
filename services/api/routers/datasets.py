from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

import anyio.to_thread
from fastapi import APIRouter, File, HTTPException, UploadFile, status
from pydantic import BaseModel, Field

from services.api.deps import DecodeLimiterDep, IdPath, SettingsDep, StoreDep
from services.common.datasets import Character, Dataset, DatasetRepository, RawImage
from services.common.images import ImageRejectedError
from services.common.storage import ObjectNotFoundError

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

MAX_FILES_PER_UPLOAD = 200


class DatasetCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    characters: list[Character] = Field(default_factory=list, max_length=500)


class DatasetView(Dataset):
    raw_images: int


class UploadOutcome(BaseModel):
    filename: str
    status: Literal["added", "duplicate", "rejected"]
    sha256: str | None = None
    reason: str | None = None


def _dataset_or_404(repo: DatasetRepository, dataset_id: str) -> Dataset:
    try:
        return repo.get(dataset_id)
    except (ObjectNotFoundError, ValueError):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset {dataset_id!r}") from None


@router.post("", status_code=status.HTTP_201_CREATED, response_model=Dataset)
def create_dataset(body: DatasetCreate, store: StoreDep) -> Dataset:
    return DatasetRepository(store).create(body.name, body.characters)


@router.get("", response_model=list[Dataset])
def list_datasets(store: StoreDep) -> list[Dataset]:
    return sorted(DatasetRepository(store).list(), key=lambda dataset: dataset.created_at, reverse=True)


@router.get("/{dataset_id}/images", response_model=list[RawImage])
def list_raw_images(dataset_id: IdPath, store: StoreDep) -> list[RawImage]:
    """The dataset's raw images with their provenance; bytes download from `/v1/artifacts/{key}`."""
    repo = DatasetRepository(store)
    _dataset_or_404(repo, dataset_id)
    return list(repo.raw_images(dataset_id))


@router.get("/{dataset_id}", response_model=DatasetView)
def get_dataset(dataset_id: IdPath, store: StoreDep) -> DatasetView:
    repo = DatasetRepository(store)
    dataset = _dataset_or_404(repo, dataset_id)
    return DatasetView(**dataset.model_dump(), raw_images=repo.count_raw_images(dataset_id))


@router.post("/{dataset_id}/images", response_model=list[UploadOutcome])
async def upload_images(
    dataset_id: IdPath,
    files: Annotated[
        list[UploadFile], File(description="Image files (JPEG, PNG, GIF, WebP, BMP, TIFF).", min_length=1)
    ],
    store: StoreDep,
    settings: SettingsDep,
    decode_limiter: DecodeLimiterDep,
) -> list[UploadOutcome]:
    """Add images to a dataset; each file is accepted or rejected with its reason."""
    repo = DatasetRepository(store)
    _dataset_or_404(repo, dataset_id)
    if len(files) > MAX_FILES_PER_UPLOAD:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"at most {MAX_FILES_PER_UPLOAD} files per request")
    outcomes = []
    for upload in files:
        name = upload.filename or "unnamed"
        data = await upload.read()
        try:
            record, added = await anyio.to_thread.run_sync(
                partial(repo.add_raw_image, dataset_id, data, source=f"upload:{name}"), limiter=decode_limiter
            )
        except ImageRejectedError as error:
            outcomes.append(UploadOutcome(filename=name, status="rejected", reason=str(error)))
            continue
        outcomes.append(UploadOutcome(filename=name, status="added" if added else "duplicate", sha256=record.sha256))
    return outcomes
