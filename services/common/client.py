"""A small HTTP client for the gateway API, used by the CLI's `--api URL` mode."""

from __future__ import annotations

import time
from typing import Any

import httpx
from tqdm import tqdm

TERMINAL_STATES = {"succeeded", "failed", "canceled"}


class ApiError(RuntimeError):
    """The API answered with an error; the message carries its status and detail."""


class ApiClient:
    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.is_error:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ApiError(f"{method} {path} → {response.status_code}: {detail}")
        return response.json()

    def create_dataset(self, name: str, characters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return self._call("POST", "/v1/datasets", json={"name": name, "characters": characters or []})

    def submit_job(self, job_type: str, params: dict[str, Any]) -> str:
        return self._call("POST", f"/v1/jobs/{job_type}", json=params)["job_id"]

    def create_pipeline(self, config: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/pipelines", json=config)

    def stop_pipeline(self, pipeline_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/pipelines/{pipeline_id}/stop")

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def jobs(self, state: str | None = None, job_type: str | None = None) -> list[dict[str, Any]]:
        params = {key: value for key, value in (("status", state), ("type", job_type)) if value}
        return self._call("GET", "/v1/jobs", params=params)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/jobs/{job_id}/cancel")

    def follow(self, job_id: str, poll_s: float = 1.0) -> dict[str, Any]:
        """Show a progress bar until the job ends; return its final record."""
        with tqdm(desc=job_id, unit="step") as bar:
            while True:
                job = self.job(job_id)
                progress = job["progress"]
                bar.total = progress.get("total")
                bar.n = progress.get("step", 0)
                bar.set_postfix_str(progress.get("message", "")[:60], refresh=False)
                bar.refresh()
                if job["state"] in TERMINAL_STATES:
                    return job
                time.sleep(poll_s)
