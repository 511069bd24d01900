"""One token for every HTTP surface: the gateway and the inference service (`GHIBLI_API_TOKEN`).

Clients send `Authorization: Bearer <token>`. AUTOMATIC1111 clients started against a webui with
`--api-auth user:password` send HTTP Basic instead (`webuiapi`'s `set_auth`): the password is the token,
the user name is not checked.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

CHALLENGE = 'Bearer, Basic realm="ghibli-lora"'
# Only documents the scheme in OpenAPI (Swagger's "Authorize"); the header is read below, Basic included.
_bearer_scheme = HTTPBearer(auto_error=False)


def presented_token(authorization: str | None) -> str | None:
    """The token in an Authorization header (Bearer, or Basic's password), or None."""
    scheme, _, value = (authorization or "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        _user, separator, password = decoded.partition(":")
        return password if separator else None
    return None


def token_accepted(authorization: str | None, expected: SecretStr | None) -> bool:
    """True when no token is configured, or the header carries it."""
    if expected is None:
        return True
    presented = presented_token(authorization)
    return presented is not None and secrets.compare_digest(presented.encode(), expected.get_secret_value().encode())


class RequireToken:
    """FastAPI dependency: 401 unless the request carries the configured token."""

    def __init__(self, expected: SecretStr | None) -> None:
        self.expected = expected

    def __call__(
        self, request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)]
    ) -> None:
        if not token_accepted(request.headers.get("authorization"), self.expected):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "missing or wrong token", headers={"WWW-Authenticate": CHALLENGE}
            )


class TokenGuard:
    """The same check around a mounted ASGI app (Prometheus' `/metrics`), which route dependencies do not reach."""

    def __init__(self, app: ASGIApp, expected: SecretStr | None) -> None:
        self.app, self.expected = app, expected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", []))
        authorization = headers.get(b"authorization", b"").decode("latin-1") or None
        if scope["type"] == "http" and not token_accepted(authorization, self.expected):
            response = JSONResponse(
                {"detail": "missing or wrong token"},
                status.HTTP_401_UNAUTHORIZED,
                headers={"WWW-Authenticate": CHALLENGE},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
