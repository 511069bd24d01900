"""Listing and editing captions over the gateway API; every export follows an edit."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from unittest.mock import ANY

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.api.app import create_app
from services.captioner.catalog import CaptionCatalog
from services.captioner.params import MAX_CAPTION_CHARS, CaptionParams
from services.captioner.tasks import run_caption
from services.common.jobs import JobContext, JobRepository
from services.common.settings import Settings
from services.common.storage import ObjectStore
from tests.captioner.helpers import make_filtered_dataset


def caption_job(store: ObjectStore, settings: Settings, **params: Any) -> dict[str, Any]:
    job = JobRepository(store).create("caption", params)
    return run_caption(JobContext(job, CaptionParams.model_validate(params), store, settings))


@pytest.fixture
def captioned(tiny_blip_env: object, local_store: ObjectStore, local_settings: Settings) -> str:
    dataset = make_filtered_dataset(local_store, count=3)
    caption_job(local_store, local_settings, dataset_id=dataset.id, trigger="ghblstyle")
    return dataset.id


@pytest.fixture
def client(local_settings: Settings, local_store: ObjectStore) -> Iterator[TestClient]:
    with TestClient(create_app(local_settings, store=local_store)) as test_client:
        yield test_client


def test_list_returns_every_caption_with_its_image(
    client: TestClient, captioned: str, local_store: ObjectStore
) -> None:
    response = client.get(f"/v1/datasets/{captioned}/captions")
    assert response.status_code == 200
    items = response.json()["items"]
    assert len(items) == 3
    assert set(items[0]) == {"file_name", "text", "image_key", "edited"}
    assert not any(item["edited"] for item in items)
    for item in items:
        assert local_store.exists(item["image_key"])
        assert item["text"].startswith("ghblstyle, ")


def test_edit_scrubs_names_and_rewrites_every_export(
    client: TestClient, captioned: str, local_store: ObjectStore
) -> None:
    file_name = client.get(f"/v1/datasets/{captioned}/captions").json()["items"][1]["file_name"]
    text = "ghblstyle, Chihiro from Spirited Away in a red dress on a bridge"
    response = client.put(f"/v1/datasets/{captioned}/captions/{file_name}", json={"text": text})
    assert response.status_code == 200
    expected = "ghblstyle, a character in a red dress on a bridge"
    assert response.json()["text"] == expected

    prefix = f"datasets/{captioned}/captions/"
    listed = {
        item["file_name"]: item["text"] for item in client.get(f"/v1/datasets/{captioned}/captions").json()["items"]
    }
    assert listed[file_name] == expected
    canonical = {entry["file_name"]: entry["text"] for entry in local_store.get_json(prefix + "captions.json")}
    assert canonical == listed
    rows = list(csv.DictReader(io.StringIO(local_store.get_bytes(prefix + "captions.csv").decode())))
    assert {row["image"].removeprefix("imagefolder/"): row["text"] for row in rows} == listed
    metadata = [json.loads(line) for line in local_store.get_bytes(prefix + "imagefolder/metadata.jsonl").splitlines()]
    assert {row["file_name"]: row["text"] for row in metadata} == listed
    assert f"{file_name}\t{expected}\n" in local_store.get_bytes(prefix + "captions.txt").decode()
    assert local_store.get_bytes(prefix + f"kohya/{file_name.rsplit('.', 1)[0]}.txt").decode() == expected + "\n"


def test_a_rerun_of_the_caption_job_keeps_hand_edits_unless_told_to_discard_them(
    client: TestClient, captioned: str, local_store: ObjectStore, local_settings: Settings
) -> None:
    file_name = client.get(f"/v1/datasets/{captioned}/captions").json()["items"][0]["file_name"]
    edited = client.put(f"/v1/datasets/{captioned}/captions/{file_name}", json={"text": "a girl on a red bridge"})
    assert edited.json() == {"file_name": file_name, "text": "a girl on a red bridge", "image_key": ANY, "edited": True}

    # New caption rules (another trigger) rewrite every caption but the one a person wrote.
    result = caption_job(local_store, local_settings, dataset_id=captioned, trigger="ghibli")
    assert result["hand_edits_kept"] == 1 and result["hand_edits_discarded"] == 0
    listed = {item["file_name"]: item for item in client.get(f"/v1/datasets/{captioned}/captions").json()["items"]}
    assert listed[file_name]["text"] == "a girl on a red bridge" and listed[file_name]["edited"]
    others = [item for name, item in listed.items() if name != file_name]
    assert all(item["text"].startswith("ghibli, ") and not item["edited"] for item in others)
    prefix = f"datasets/{captioned}/captions/"
    sidecar = prefix + f"kohya/{file_name.rsplit('.', 1)[0]}.txt"
    assert local_store.get_bytes(sidecar).decode() == "a girl on a red bridge\n"
    assert f"{file_name},a girl on a red bridge" in local_store.get_bytes(prefix + "captions.csv").decode()
    names = zipfile.ZipFile(io.BytesIO(client.get(f"/v1/datasets/{captioned}/captions/export.zip").content)).namelist()
    assert not any(name.startswith("edits/") for name in names)

    result = caption_job(local_store, local_settings, dataset_id=captioned, trigger="ghibli", discard_hand_edits=True)
    assert result["hand_edits_kept"] == 0 and result["hand_edits_discarded"] == 1
    listed = {item["file_name"]: item for item in client.get(f"/v1/datasets/{captioned}/captions").json()["items"]}
    assert listed[file_name]["text"].startswith("ghibli, ") and not listed[file_name]["edited"]


def test_edits_of_different_captions_at_once_all_reach_the_exports(
    tiny_blip_env: object, local_store: ObjectStore, local_settings: Settings
) -> None:
    dataset = make_filtered_dataset(local_store, count=8)
    caption_job(local_store, local_settings, dataset_id=dataset.id)
    catalog = CaptionCatalog.for_dataset(local_store, dataset.id)
    texts = {entry.file_name: f"picture number {index} by a river" for index, entry in enumerate(catalog.entries())}
    with ThreadPoolExecutor(len(texts)) as pool:
        list(pool.map(lambda item: catalog.edit(*item), texts.items()))
    assert {entry.file_name: entry.text for entry in catalog.entries()} == texts
    assert catalog.hand_edits() == texts


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("captions/missing.png", {"text": "a girl"}, 404),
        ("captions/{file}", {"text": ""}, 422),
        ("captions/{file}", {"text": "a" * (MAX_CAPTION_CHARS + 1)}, 422),
        ("captions/{file}", {"text": "Spirited Away, Howl's Moving Castle"}, 422),
        ("captions/{file}", {}, 422),
    ],
)
def test_bad_edits_are_refused(
    client: TestClient, captioned: str, path: str, body: dict[str, str], status: int
) -> None:
    file_name = client.get(f"/v1/datasets/{captioned}/captions").json()["items"][0]["file_name"]
    before = client.get(f"/v1/datasets/{captioned}/captions").json()
    response = client.put(f"/v1/datasets/{captioned}/" + path.format(file=file_name), json=body)
    assert response.status_code == status, response.text
    assert client.get(f"/v1/datasets/{captioned}/captions").json() == before


def test_a_dataset_without_captions_is_404(client: TestClient) -> None:
    assert client.get("/v1/datasets/ds-nothing/captions").status_code == 404
    assert client.put("/v1/datasets/ds-nothing/captions/a.png", json={"text": "a girl"}).status_code == 404


def test_the_export_downloads_as_a_zip(client: TestClient, captioned: str) -> None:
    response = client.get(f"/v1/datasets/{captioned}/captions/export.zip")
    assert response.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert {"captions.json", "captions.csv", "captions.txt", "imagefolder/metadata.jsonl"} <= set(names)
    assert sum(name.startswith("kohya/") and name.endswith(".txt") for name in names) == 3
    assert not any(name.startswith("raw/") for name in names)


def test_captions_need_the_token_when_one_is_set(local_settings: Settings, local_store: ObjectStore) -> None:
    settings = local_settings.model_copy(update={"api_token": SecretStr("secret")})
    with TestClient(create_app(settings, store=local_store)) as client:
        assert client.get("/v1/datasets/ds-x/captions").status_code == 401
