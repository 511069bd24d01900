"""The LoRA registry: every trained LoRA has `loras/<id>/lora.json` beside its weights."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from services.common.jobs import now
from services.common.storage import ObjectNotFoundError, ObjectStore


class LoraRecord(BaseModel):
    id: str
    name: str = Field(description="Unique, used as <lora:NAME:weight> in A1111 prompts.")
    base_model: str
    rank: int
    alpha: float
    steps: int
    dataset_id: str | None = None
    job_id: str | None = None
    trigger: str | None = Field(None, description="Trigger token the captions carried, if any.")
    diffusers_key: str = Field(description="peft/diffusers `pytorch_lora_weights.safetensors`.")
    kohya_key: str = Field(description="AUTOMATIC1111/kohya format (`lora_unet_…` keys with `.alpha`).")
    sha256: str = Field(description="Of the kohya file; A1111 shows its first 12 hex as the LoRA hash.")
    artifacts: dict[str, str] = Field(default_factory=dict, description="config, loss curve, grids …")
    created_at: datetime = Field(default_factory=now)
    extra: dict[str, Any] = Field(default_factory=dict)


class LoraRepository:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @staticmethod
    def record_key(lora_id: str) -> str:
        return f"loras/{lora_id}/lora.json"

    def save(self, record: LoraRecord) -> None:
        self.store.put_bytes(self.record_key(record.id), record.model_dump_json().encode(), "application/json")

    def get(self, lora_id: str) -> LoraRecord:
        return LoraRecord.model_validate_json(self.store.get_bytes(self.record_key(lora_id)))

    def list(self) -> Iterator[LoraRecord]:
        for key in self.store.list("loras/"):
            if key.endswith("/lora.json") and key.count("/") == 2:
                yield LoraRecord.model_validate_json(self.store.get_bytes(key))

    def find(self, id_or_name: str) -> LoraRecord:
        """By id, else by name (the newest of that name); ObjectNotFoundError when neither matches."""
        matches = [record for record in self.list() if id_or_name in (record.id, record.name)]
        if not matches:
            raise ObjectNotFoundError(id_or_name)
        return max(matches, key=lambda record: (record.id == id_or_name, record.created_at))
