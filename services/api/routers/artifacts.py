from __future__ import annotations

import mimetypes

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import RedirectResponse, Response

from services.api.deps import KeyPath, StoreDep
from services.common.storage import InvalidKeyError, ObjectNotFoundError, validate_key

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])


@router.get("/{key:path}", response_model=None)
def get_artifact(key: KeyPath, store: StoreDep, redirect: bool = False) -> Response:
    """An object from the store; `?redirect=true` answers with a presigned URL where S3 can sign one."""
    try:
        validate_key(key)
        if redirect and (url := store.url(key)) is not None:
            if not store.exists(key):
                raise ObjectNotFoundError(key)
            return RedirectResponse(url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
        data = store.get_bytes(key)
    except InvalidKeyError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
    except ObjectNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no artifact {key!r}") from None
    media_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    # nosniff: a browser keeps to the declared type, so an uploaded PNG that is also valid HTML stays a picture.
    return Response(data, media_type=media_type, headers={"X-Content-Type-Options": "nosniff"})
