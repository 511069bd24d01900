from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from services.api.deps import IdPath, StoreDep
from services.common.loras import LoraRecord, LoraRepository
from services.common.storage import InvalidKeyError, ObjectNotFoundError

router = APIRouter(prefix="/v1/loras", tags=["loras"])


@router.get("", response_model=list[LoraRecord])
def list_loras(store: StoreDep) -> list[LoraRecord]:
    """Every trained LoRA, newest first; weights download from `/v1/artifacts/{key}`."""
    return sorted(LoraRepository(store).list(), key=lambda record: record.created_at, reverse=True)


@router.get("/{lora_id}", response_model=LoraRecord)
def get_lora(lora_id: IdPath, store: StoreDep) -> LoraRecord:
    try:
        return LoraRepository(store).find(lora_id)
    except (ObjectNotFoundError, InvalidKeyError):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no LoRA {lora_id!r}") from None
