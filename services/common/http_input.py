"""Request input guards shared by the gateway and the inference service.

- `BodySizeLimitMiddleware`: 413 before an oversized body is read into memory or spooled to disk.
- `StrictJsonMiddleware`: Python's JSON parser accepts `NaN`, `Infinity` and numbers that overflow to
  infinity (`1e999`), and strings holding lone UTF-16 surrogates (`"\\ud800"`); no model limit or store
  can take those. Such a body is answered 422 naming each offending field, before any route sees it.
- `validation_error_response`: the 422 for an invalid body, in FastAPI's `{"detail": [...]}` shape but
  without echoing the input (a 45 MB field came back whole; a NaN input could not be encoded at all).
- `error_responses`: the OpenAPI entries for the 4xx/5xx answers, all in that one `{"detail": ...}` shape.
- `http_error_response`: Starlette's answer to an HTTP error, except that a 405 lists every method the path
  takes in `Allow` (Starlette names only the first route's, so `OPTIONS /v1/datasets` said `GET` alone).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from typing import Any

import anyio.to_thread
from fastapi import Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
MAX_REPORTED_ERRORS = 20
# Bodies larger than this are checked in a worker thread, so one big request does not stall the event loop.
THREAD_CHECK_BYTES = 256 * 1024


def _json_response(status_code: int, payload: dict[str, Any]) -> tuple[Message, Message]:
    body = json.dumps(payload).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status_code,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, {"type": "http.response.body", "body": body}


class _BodyTooLargeError(Exception):
    pass


class BodySizeLimitMiddleware:
    """413 when Content-Length, or the bytes actually streamed, pass `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return

        received = 0
        exceeded = response_started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded:
                # The app may turn our interruption into its own error (Starlette answers 400 for a
                # form it could not read); the client gets the 413 instead.
                return
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        with contextlib.suppress(_BodyTooLargeError):
            await self.app(scope, counting_receive, guarded_send)
        if exceeded and not response_started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        start, body = _json_response(
            status.HTTP_413_CONTENT_TOO_LARGE, {"detail": f"request body exceeds the {self.max_bytes} byte limit"}
        )
        start["headers"].append((b"connection", b"close"))
        await send(start)
        await send(body)


def unrepresentable_values(document: Any) -> list[dict[str, Any]]:
    """Pydantic-style errors for each non-finite number and each string with a lone surrogate."""
    errors: list[dict[str, Any]] = []
    pending: list[tuple[tuple[str | int, ...], Any]] = [((), document)]
    while pending and len(errors) < MAX_REPORTED_ERRORS:
        location, value = pending.pop()
        if isinstance(value, float) and not math.isfinite(value):
            errors.append(
                {"type": "finite_number", "loc": ["body", *location], "msg": "Input should be a finite number"}
            )
        elif isinstance(value, str) and LONE_SURROGATE.search(value):
            errors.append(
                {
                    "type": "string_unicode",
                    "loc": ["body", *location],
                    "msg": "Input should be a valid string: it holds a lone UTF-16 surrogate",
                }
            )
        elif isinstance(value, dict):
            for key, item in value.items():
                pending.append(((*location, key), key))  # a key can hold a surrogate too
                pending.append(((*location, key), item))
        elif isinstance(value, list):
            pending.extend(((*location, index), item) for index, item in enumerate(value))
    return errors


def check_json_body(body: bytes) -> list[dict[str, Any]]:
    """Errors for a JSON body a route must not see; [] when it is fine or not JSON at all (FastAPI answers that)."""
    try:
        document = json.loads(body)
    except ValueError:  # malformed JSON, bad UTF-8, an integer past Python's digit limit
        with contextlib.suppress(ValueError):
            json.loads(body, parse_int=float)  # anything but the digit limit is FastAPI's to report
            return [{"type": "int_parsing_size", "loc": ["body"], "msg": "Input has an integer too large to read"}]
        return []
    return unrepresentable_values(document)


class StrictJsonMiddleware:
    """422 for JSON bodies holding NaN/Infinity/overflowing numbers or lone surrogates, naming the fields."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = dict(scope.get("headers", [])).get(b"content-type", b"")
        if scope["type"] != "http" or not content_type.split(b";")[0].strip().endswith(b"json"):
            await self.app(scope, receive, send)
            return
        chunks, more_body = [], True
        while more_body:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)  # the client left; let the app see the disconnect
                return
            chunks.append(message.get("body", b""))
            more_body = message.get("more_body", False)
        body = b"".join(chunks)
        if len(body) > THREAD_CHECK_BYTES:
            errors = await anyio.to_thread.run_sync(check_json_body, body)
        else:
            errors = check_json_body(body)
        if errors:
            start, response = _json_response(status.HTTP_422_UNPROCESSABLE_CONTENT, {"detail": errors})
            await send(start)
            await send(response)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _plain(value: object) -> object:
    """A context value JSON can carry as it is (a bound, a pattern), or its text (an exception, infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def _without_input(error: dict[str, Any]) -> dict[str, Any]:
    trimmed = {key: value for key, value in error.items() if key not in ("input", "url")}
    if "ctx" in error:
        trimmed["ctx"] = {key: _plain(value) for key, value in error["ctx"].items()}
    return trimmed


async def validation_error_response(_: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, minus the echoed input."""
    errors = [_without_input(item) for item in error.errors()]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer of both services."""

    detail: str | list[dict[str, Any]] = Field(description="A message, or the list of field errors of a 422.")


_ERROR_DESCRIPTIONS = {
    400: "Malformed input that is not a field of the body (an object key, a form)",
    401: "Missing or wrong token (`GHIBLI_API_TOKEN`): Bearer, or HTTP Basic with the token as password",
    404: "No such object",
    409: "Conflicts with the object's current state",
    413: "Request body over the size limit",
    422: "Invalid input; each error names its field",
    429: "Too many requests waiting; see Retry-After",
    503: "Not ready: the model is loading, or the job queue (Redis) is unavailable; see Retry-After",
    504: "The work took longer than the service waits",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these status codes, each with the shared error body."""
    return {code: {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[code]} for code in codes}


async def http_error_response(request: Request, error: StarletteHTTPException) -> Response:
    if error.status_code != status.HTTP_405_METHOD_NOT_ALLOWED:
        return await http_exception_handler(request, error)
    methods = {
        method
        for route in request.app.router.routes
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] != Match.NONE
        for method in route.methods
    }
    return JSONResponse({"detail": error.detail}, error.status_code, headers={"Allow": ", ".join(sorted(methods))})
