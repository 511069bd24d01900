"""Large uploads are decoded off the gateway's event loop: /healthz keeps answering while they are checked."""

from __future__ import annotations

import io
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from services.api.app import create_app
from services.common.settings import Settings
from tests.support import serve_in_thread

SIDE = 7_999  # 64 Mpx, just under the pixel cap: every upload is fully decoded


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("uploads"))
    with serve_in_thread(create_app(settings)) as port:
        yield f"http://127.0.0.1:{port}"


def huge_png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (SIDE, SIDE), (shade, 40, 90, 255)).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def test_healthz_answers_while_large_uploads_decode(gateway_url: str, tmp_path: Path) -> None:
    files = [("files", (f"big-{shade}.png", huge_png(shade), "image/png")) for shade in (10, 60, 110, 160)]
    dataset_id = httpx.post(f"{gateway_url}/v1/datasets", json={"name": "big"}).json()["id"]
    outcome: dict[str, httpx.Response] = {}

    def upload() -> None:
        outcome["response"] = httpx.post(f"{gateway_url}/v1/datasets/{dataset_id}/images", files=files, timeout=300)

    uploader = threading.Thread(target=upload)
    uploader.start()
    latencies = []
    with httpx.Client(base_url=gateway_url, timeout=30) as client:
        while uploader.is_alive():
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)
    uploader.join()
    assert [item["status"] for item in outcome["response"].json()] == ["added"] * 4
    assert len(latencies) >= 5, "the uploads ended before the healthcheck could be measured"
    # Decoding in the event loop held every healthcheck for seconds; in threads it answers at once.
    assert statistics.median(latencies) < 0.2, latencies
    assert max(latencies) < 1.0, latencies
