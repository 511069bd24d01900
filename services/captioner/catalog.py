"""A dataset's caption set in the object store: publish the exports, list and edit captions.

Used by the caption job and by the API (so no torch here). `captions.json` is written last: a
reader that finds it also finds every image and sidecar it names. Each hand edit is also kept as
its own object under `edits/`, apart from the exports, so publishing the job's captions again
keeps it (until a job asks to discard hand edits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, Field

from services.captioner.exports import (
    CAPTIONS_CSV,
    CAPTIONS_JSON,
    CAPTIONS_TXT,
    IMAGEFOLDER,
    KOHYA,
    METADATA_JSONL,
    CaptionEntry,
    check_unique_names,
    image_paths,
    render_sidecar,
    render_tables,
    sidecar_path,
)
from services.captioner.params import MAX_CAPTION_CHARS
from services.captioner.scrub import NameScrubber, normalize_whitespace
from services.common.locks import KeyedLocks
from services.common.storage import ObjectStore

RULES_FILE = "rules.json"
EDITS = "edits"
# Two edits of one set at once would each rewrite the tables from what they read, and one would
# lose the other's caption there; edits of a set wait for each other (the API is one process).
_SET_LOCKS = KeyedLocks()
_CONTENT_TYPES = {".json": "application/json", ".jsonl": "application/jsonl", ".csv": "text/csv", ".txt": "text/plain"}


class CaptionRules(BaseModel):
    """The names a set was scrubbed of, kept so a hand edit is scrubbed the same way."""

    characters: list[str] = Field(default_factory=list)
    titles: list[str] = Field(default_factory=list)
    subject: str = "a character"

    def scrubber(self) -> NameScrubber:
        return NameScrubber(self.characters, self.titles, self.subject)


class CaptionNotFoundError(KeyError):
    """No caption with that file name in the set."""


class CaptionRejectedError(ValueError):
    """An edited caption that cannot be used (empty after scrubbing)."""


@dataclass(frozen=True)
class Published:
    keys: dict[str, str]  # export name → key
    hand_edits: int  # captions in the set that a person wrote


class CaptionCatalog:
    def __init__(self, store: ObjectStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix.rstrip("/") + "/" if prefix else ""

    @classmethod
    def for_dataset(cls, store: ObjectStore, dataset_id: str) -> CaptionCatalog:
        return cls(store, f"datasets/{dataset_id}/captions")

    def key(self, relative: str) -> str:
        return self.prefix + relative

    def exists(self) -> bool:
        return self.store.exists(self.key(CAPTIONS_JSON))

    def entries(self) -> list[CaptionEntry]:
        """The set's captions; raises ObjectNotFoundError when none were published."""
        return [CaptionEntry.model_validate(item) for item in self.store.get_json(self.key(CAPTIONS_JSON))]

    def rules(self) -> CaptionRules:
        if not self.store.exists(self.key(RULES_FILE)):
            return CaptionRules()
        return CaptionRules.model_validate_json(self.store.get_bytes(self.key(RULES_FILE)))

    def edit_key(self, file_name: str) -> str:
        return self.key(f"{EDITS}/{file_name}.json")

    def _edit_keys(self) -> list[str]:
        return [key for key in self.store.list(self.key(EDITS + "/")) if key.endswith(".json")]

    def hand_edits(self) -> dict[str, str]:
        """The captions people wrote, by file name."""
        start = len(self.key(EDITS + "/"))
        return {key[start : -len(".json")]: self.store.get_json(key)["text"] for key in self._edit_keys()}

    def discard_hand_edits(self) -> int:
        """Forget every hand edit (the next publish writes the job's captions); return how many there were."""
        keys = self._edit_keys()
        for key in keys:
            self.store.delete(key)
        return len(keys)

    def publish(
        self, entries: list[CaptionEntry], rules: CaptionRules, image_bytes: Callable[[CaptionEntry], bytes]
    ) -> Published:
        """Write every export, with hand edits in place of the given captions; drop images no longer in the set."""
        check_unique_names(entries)
        wanted: set[str] = set()
        for entry in entries:
            copies = [self.key(path) for path in image_paths(entry.file_name)]
            missing = [key for key in copies if not self.store.exists(key)]
            if missing:
                data = image_bytes(entry)
                for key in missing:
                    self.store.put_bytes(key, data)
            wanted.update([*copies, self.key(sidecar_path(entry.file_name))])
        for folder in (IMAGEFOLDER, KOHYA):
            for key in self.store.list(self.key(folder + "/")):
                if key not in wanted and key != self.key(METADATA_JSONL):
                    self.store.delete(key)
        self.store.put_bytes(self.key(RULES_FILE), rules.model_dump_json(indent=1).encode(), "application/json")
        # Hand edits are read last, next to the writes that use them: an edit made while the images
        # were copied is kept too.
        with _SET_LOCKS(self.prefix):
            edits = self.hand_edits()
            entries = [
                entry.model_copy(update={"text": edits[entry.file_name], "edited": True})
                if entry.file_name in edits
                else entry
                for entry in entries
            ]
            for entry in entries:
                self.store.put_bytes(self.key(sidecar_path(entry.file_name)), render_sidecar(entry), "text/plain")
            self._write_tables(entries)
        keys = {
            "captions": self.key(CAPTIONS_JSON),
            "csv": self.key(CAPTIONS_CSV),
            "txt": self.key(CAPTIONS_TXT),
            "metadata": self.key(METADATA_JSONL),
            "imagefolder": self.key(IMAGEFOLDER + "/"),
            "kohya": self.key(KOHYA + "/"),
        }
        return Published(keys, sum(entry.edited for entry in entries))

    def _write_tables(self, entries: list[CaptionEntry]) -> None:
        tables = render_tables(entries)
        canonical = tables.pop(CAPTIONS_JSON)
        for relative, data in tables.items():
            self.store.put_bytes(self.key(relative), data, _CONTENT_TYPES[relative[relative.rfind(".") :]])
        self.store.put_bytes(self.key(CAPTIONS_JSON), canonical, "application/json")

    def edit(self, file_name: str, text: str) -> CaptionEntry:
        """Replace one caption (scrubbed like the job's, cut to MAX_CAPTION_CHARS) and rewrite the exports."""
        cleaned = self.rules().scrubber().scrub(normalize_whitespace(text))[:MAX_CAPTION_CHARS].strip()
        with _SET_LOCKS(self.prefix):
            entries = self.entries()
            index = next((i for i, entry in enumerate(entries) if entry.file_name == file_name), None)
            if index is None:
                raise CaptionNotFoundError(file_name)
            if not cleaned:
                raise CaptionRejectedError("the caption is empty once names and titles are removed")
            entries[index] = entries[index].model_copy(update={"text": cleaned, "edited": True})
            self.store.put_json(self.edit_key(file_name), {"text": cleaned})
            # Only this image's sidecar changes; the tables hold every caption and are rewritten.
            self.store.put_bytes(self.key(sidecar_path(file_name)), render_sidecar(entries[index]), "text/plain")
            self._write_tables(entries)
        return entries[index]
