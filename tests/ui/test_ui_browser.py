"""The web page in headless Chromium (Debian `chromium`, driven by Playwright)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.common.loras import LoraRecord, LoraRepository
from services.common.storage import LocalStore
from services.pipeline.demo import MODEL_SETTINGS
from tests.support import distinct_images, free_port, png_bytes

ROOT = Path(__file__).parents[2]
SCREENSHOT_DIR = ROOT / "test-output"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def embedded_api(tmp_path: Path, demo_models: dict[str, Path]) -> Iterator[str]:
    """The API in embedded mode (jobs run in its process) on tiny local models."""
    port = free_port()
    env = {
        "GHIBLI_DATA_DIR": str(tmp_path / "data"),
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        **{variable: str(demo_models[model]) for variable, model in MODEL_SETTINGS.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "services.api.app:create_app", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("the API did not start")
    yield url
    process.terminate()
    process.wait(timeout=10)


def _chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is required for the browser test (scripts/setup.sh installs it)")
    return CHROMIUM


def _finished(api_url: str, job_id: str, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = httpx.get(f"{api_url}/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "canceled"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_web_page_shows_jobs_datasets_and_images(embedded_api: str) -> None:
    from playwright.sync_api import sync_playwright

    dataset = httpx.post(f"{embedded_api}/v1/datasets", json={"name": "totoro-set"}).json()
    httpx.post(
        f"{embedded_api}/v1/datasets/{dataset['id']}/images",
        files=[("files", ("a.png", png_bytes((30, 120, 60), (96, 96)), "image/png"))],
    )
    job = httpx.post(f"{embedded_api}/v1/jobs/filter", json={"dataset_id": dataset["id"]}).json()

    SCREENSHOT_DIR.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=_chromium(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page()
        page.goto(f"{embedded_api}/")
        page.wait_for_selector(f"tr[data-job='{job['job_id']}']", timeout=15_000)
        assert "filter" in page.inner_text(f"tr[data-job='{job['job_id']}']")
        page.screenshot(path=SCREENSHOT_DIR / "ui-jobs.png", full_page=True)

        page.click("nav button[data-tab=datasets]")
        page.click("text=totoro-set")
        page.wait_for_function("document.querySelector('#image-grid img')?.src.startsWith('blob:')", timeout=15_000)
        page.screenshot(path=SCREENSHOT_DIR / "ui-dataset.png", full_page=True)
        assert page.is_hidden("#error")
        browser.close()
    print(f"screenshots: {SCREENSHOT_DIR / 'ui-jobs.png'}, {SCREENSHOT_DIR / 'ui-dataset.png'}")


def test_captions_are_edited_loras_downloaded_and_images_generated_from_the_page(
    embedded_api: str, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    dataset = httpx.post(f"{embedded_api}/v1/datasets", json={"name": "kiki-set"}).json()
    files = [("files", (f"{n}.png", data, "image/png")) for n, data in enumerate(distinct_images(2))]
    httpx.post(f"{embedded_api}/v1/datasets/{dataset['id']}/images", files=files, timeout=60)
    for job_type in ("filter", "caption"):
        job_id = httpx.post(f"{embedded_api}/v1/jobs/{job_type}", json={"dataset_id": dataset["id"]}).json()["job_id"]
        assert _finished(embedded_api, job_id)["state"] == "succeeded", job_type
    # A registered LoRA (its weights are placeholders: this test is about the page, not the model).
    store = LocalStore(tmp_path / "data" / "objects")
    LoraRepository(store).save(
        LoraRecord(
            id="lora-ui",
            name="ui-test-lora",
            base_model="tiny-sd",
            rank=4,
            alpha=4,
            steps=10,
            diffusers_key=store.put_bytes("loras/lora-ui/pytorch_lora_weights.safetensors", b"diffusers-weights"),
            kohya_key=store.put_bytes("loras/lora-ui/ui-test-lora.safetensors", b"kohya-weights"),
            sha256=hashlib.sha256(b"kohya-weights").hexdigest(),
        )
    )

    SCREENSHOT_DIR.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(accept_downloads=True)
        page.goto(f"{embedded_api}/")

        page.click("nav button[data-tab=datasets]")
        page.click("text=kiki-set")
        caption = page.locator("#caption-grid textarea").first
        caption.wait_for(timeout=15_000)
        file_name = caption.get_attribute("data-file")
        caption.fill("a girl with a red bow on a hill above the sea")
        caption.blur()  # the page saves on change
        page.screenshot(path=SCREENSHOT_DIR / "ui-captions.png", full_page=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            items = httpx.get(f"{embedded_api}/v1/datasets/{dataset['id']}/captions").json()["items"]
            saved = next(item["text"] for item in items if item["file_name"] == file_name)
            if "red bow" in saved:
                break
            time.sleep(0.2)
        assert saved.endswith("a girl with a red bow on a hill above the sea"), saved
        page.wait_for_selector(f"#caption-grid textarea.edited[data-file='{file_name}']", timeout=5_000)

        page.click("nav button[data-tab=loras]")
        page.wait_for_selector("text=ui-test-lora")
        for button, expected_name, expected_bytes in (
            ("diffusers", "pytorch_lora_weights.safetensors", b"diffusers-weights"),
            ("A1111 / kohya", "ui-test-lora.safetensors", b"kohya-weights"),
        ):
            with page.expect_download() as downloading:
                page.click(f"button:text-is('{button}')")
            download = downloading.value
            assert download.suggested_filename == expected_name
            assert Path(download.path()).read_bytes() == expected_bytes

        page.click("nav button[data-tab=generate]")
        for field, value in (("steps", "2"), ("width", "64"), ("height", "64"), ("seed", "7")):
            page.fill(f"#generate-form input[name={field}]", value)
        page.click("#generate-form button[type=submit]")
        page.wait_for_function(
            "document.querySelector('#generate-output img')?.src.startsWith('blob:')", timeout=120_000
        )
        page.screenshot(path=SCREENSHOT_DIR / "ui-generate.png", full_page=True)
        assert page.is_hidden("#error")
        browser.close()
