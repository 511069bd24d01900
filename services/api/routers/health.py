from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "The store or the queue does not answer (same body)"}})
def readyz(request: Request) -> JSONResponse:
    """The object store and the job queue (Redis) answer."""
    checks: dict[str, str] = {}
    for name, component in (("store", request.app.state.store), ("queue", request.app.state.queue)):
        try:
            component.check()
            checks[name] = "ok"
        except Exception as error:
            checks[name] = f"{type(error).__name__}: {error}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
