"""Caption listing, editing and the export download: `/v1/datasets/{id}/captions`."""

from __future__ import annotations

import os
import tempfile
import zipfile

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from services.api.deps import IdPath, StoreDep
from services.captioner.catalog import EDITS, CaptionCatalog, CaptionNotFoundError, CaptionRejectedError
from services.captioner.exports import CaptionEntry
from services.captioner.params import MAX_CAPTION_CHARS

router = APIRouter(prefix="/v1/datasets", tags=["captions"])


class CaptionItem(BaseModel):
    file_name: str
    text: str
    image_key: str
    edited: bool = Field(False, description="Written by a person; a rerun of the caption job keeps it.")


class CaptionList(BaseModel):
    items: list[CaptionItem]


class CaptionEdit(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_CAPTION_CHARS)


def _item(entry: CaptionEntry) -> CaptionItem:
    return CaptionItem(file_name=entry.file_name, text=entry.text, image_key=entry.image_key, edited=entry.edited)


def _catalog_or_404(store: StoreDep, dataset_id: str) -> CaptionCatalog:
    catalog = CaptionCatalog.for_dataset(store, dataset_id)
    if not catalog.exists():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"dataset {dataset_id!r} has no captions (run a caption job)")
    return catalog


@router.get("/{dataset_id}/captions", response_model=CaptionList)
def list_captions(dataset_id: IdPath, store: StoreDep) -> CaptionList:
    return CaptionList(items=[_item(entry) for entry in _catalog_or_404(store, dataset_id).entries()])


@router.get("/{dataset_id}/captions/export.zip", response_class=FileResponse)
def download_exports(dataset_id: IdPath, store: StoreDep) -> FileResponse:
    """Every export (captions.json/csv/txt, imagefolder/, kohya/) as one zip."""
    catalog = _catalog_or_404(store, dataset_id)
    # On disk, not in memory: a set of a few thousand 512x512 images is hundreds of megabytes.
    with (
        tempfile.NamedTemporaryFile(suffix=".zip", delete=False) as handle,
        zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive,
    ):
        for key in store.list(catalog.prefix):
            relative = key[len(catalog.prefix) :]
            if not relative.startswith(("raw/", f"{EDITS}/")):  # the BLIP cache and the edit records are internal
                archive.writestr(relative, store.get_bytes(key))
    return FileResponse(
        handle.name,
        media_type="application/zip",
        filename=f"{dataset_id}-captions.zip",
        background=BackgroundTask(os.unlink, handle.name),
    )


@router.put("/{dataset_id}/captions/{file_name}", response_model=CaptionItem)
def edit_caption(dataset_id: IdPath, file_name: str, body: CaptionEdit, store: StoreDep) -> CaptionItem:
    """Replace one caption; names are scrubbed as in the job, every export is rewritten, and a rerun of the
    caption job keeps it (unless that job asks to `discard_hand_edits`)."""
    catalog = _catalog_or_404(store, dataset_id)
    try:
        entry = catalog.edit(file_name, body.text)
    except CaptionNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no caption for {file_name!r}") from None
    except CaptionRejectedError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    return _item(entry)
