"""The web page in headless Chromium (Debian `chromium`, driven by Playwright)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import free_port, png_bytes

ROOT = Path(__file__).parents[2]
SCREENSHOT_DIR = ROOT / "test-output"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def embedded_api(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {"GHIBLI_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
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


def test_web_page_shows_jobs_datasets_and_images(embedded_api: str) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is required for the browser test (scripts/setup.sh installs it)")
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
            executable_path=CHROMIUM,
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
