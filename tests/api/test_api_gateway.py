from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.api.app import create_app
from services.common.settings import Settings
from tests.support import png_bytes


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"store": "ok", "queue": "ok"}


def test_readiness_reports_an_unreachable_redis(api_settings: Settings) -> None:
    broken = api_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(broken)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["store"] == "ok" and "Connection" in response.json()["checks"]["queue"]


def _truncated_jpeg() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.radial_gradient("L").convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()[: buffer.tell() * 2 // 3]


def test_dataset_upload_accepts_images_and_rejects_the_rest_with_reasons(client: TestClient) -> None:
    dataset = client.post(
        "/v1/datasets",
        json={"name": "howl", "characters": [{"character": "Howl Jenkins Pendragon", "movie": "Howl's Moving Castle"}]},
    ).json()
    image = png_bytes()
    files = [
        ("files", ("a.png", image, "image/png")),
        ("files", ("again.png", image, "image/png")),
        ("files", ("page.jpg", b"<html>not an image</html>", "image/jpeg")),
        ("files", ("cut.png", image[: len(image) // 2], "image/png")),
        ("files", ("cut.jpg", _truncated_jpeg(), "image/jpeg")),  # passes Pillow's verify(), fails decoding
    ]
    outcomes = client.post(f"/v1/datasets/{dataset['id']}/images", files=files).json()
    assert [outcome["status"] for outcome in outcomes] == ["added", "duplicate", "rejected", "rejected", "rejected"]
    assert "not an image" in outcomes[2]["reason"] and "corrupt or truncated" in outcomes[3]["reason"]
    assert "corrupt or truncated" in outcomes[4]["reason"]
    assert client.get(f"/v1/datasets/{dataset['id']}").json()["raw_images"] == 1


def test_decompression_bomb_upload_is_rejected(client: TestClient) -> None:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buffer, format="PNG")  # 144 Mpx in a few KB
    dataset = client.post("/v1/datasets", json={"name": "bomb"}).json()
    outcome = client.post(
        f"/v1/datasets/{dataset['id']}/images", files=[("files", ("bomb.png", buffer.getvalue(), "image/png"))]
    ).json()[0]
    assert outcome["status"] == "rejected" and "pixel" in outcome["reason"]


def test_bad_requests_get_4xx_with_messages(client: TestClient) -> None:
    assert client.post("/v1/datasets", json={"name": ""}).status_code == 422
    assert (
        client.post("/v1/datasets", content=b"{not json", headers={"content-type": "application/json"}).status_code
        == 422
    )
    assert client.get("/v1/datasets/ds-unknown").status_code == 404
    assert client.get("/v1/jobs/job-unknown").status_code == 404
    assert client.post("/v1/jobs/unknown-type", json={}).status_code in (404, 405)
    upload_to_missing = client.post("/v1/datasets/nope/images", files=[("files", ("a.png", png_bytes(), "image/png"))])
    assert upload_to_missing.status_code == 404 and "no dataset" in upload_to_missing.json()["detail"]


@pytest.mark.parametrize("key", ["..%2F..%2Fetc%2Fpasswd", "a/..%2F..%2Fsecret", "%2Fetc%2Fpasswd", "a%5C..%5Cb"])
def test_artifact_keys_that_climb_are_refused(client: TestClient, key: str) -> None:
    response = client.get(f"/v1/artifacts/{key}")
    # Refused by the key pattern the schema states (422 naming the path parameter) or by the store's check (400).
    detail = response.json()["detail"]
    assert (response.status_code, "object key" in str(detail) or detail[0]["loc"] == ["path", "key"]) in {
        (400, True),
        (422, True),
    }


def test_artifact_download(client: TestClient) -> None:
    dataset = client.post("/v1/datasets", json={"name": "d"}).json()
    record_key = f"datasets/{dataset['id']}/dataset.json"
    artifact = client.get(f"/v1/artifacts/{record_key}")
    assert artifact.json()["name"] == "d"
    assert artifact.headers["x-content-type-options"] == "nosniff"
    assert client.get("/v1/artifacts/datasets/nothing/here.json").status_code == 404
    redirect = client.get(f"/v1/artifacts/{record_key}", params={"redirect": True}, follow_redirects=False)
    assert redirect.status_code == 307 and "X-Amz-Signature" in redirect.headers["location"]


def test_oversized_body_is_refused_with_413(client: TestClient) -> None:
    too_big = b"\0" * (3 * 1024 * 1024)
    response = client.post("/v1/datasets/x/images", files=[("files", ("big.png", too_big, "image/png"))])
    assert response.status_code == 413 and "limit" in response.json()["detail"]
    assert client.get("/healthz").status_code == 200


def test_token_is_required_when_configured(api_settings: Settings) -> None:
    secured = api_settings.model_copy(update={"api_token": SecretStr("s3cret")})
    with TestClient(create_app(secured)) as client:
        assert client.get("/healthz").status_code == 200
        assert client.post("/v1/datasets", json={"name": "x"}).status_code == 401
        wrong = client.post("/v1/datasets", json={"name": "x"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = client.post("/v1/datasets", json={"name": "x"}, headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 201
        basic = client.get("/v1/datasets", auth=("lab", "s3cret"))  # AUTOMATIC1111 clients send HTTP Basic
        assert basic.status_code == 200
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/ui/").status_code == 200  # the page itself holds no data; it sends the token


def test_job_listings_are_summaries_without_params(api_settings: Settings) -> None:
    class HeldQueue:
        def submit(self, job: object) -> None:
            return None

        def check(self) -> None:
            return None

    with TestClient(create_app(api_settings, queue=HeldQueue())) as client:
        dataset_id = client.post("/v1/datasets", json={"name": "listing"}).json()["id"]
        urls = [f"https://images.example/{index:05d}/picture.png" for index in range(20_000)]
        job_id = client.post("/v1/jobs/crawl", json={"dataset_id": dataset_id, "urls": urls}).json()["job_id"]
        listing = client.get("/v1/jobs")
        assert [job["id"] for job in listing.json()] == [job_id]
        assert "params" not in listing.json()[0] and "result" not in listing.json()[0]
        assert len(listing.content) < 1_000
        assert len(client.get(f"/v1/jobs/{job_id}").json()["params"]["urls"]) == 20_000  # the full record
