"""GET /v1/files/{key}: an artifact from local storage, by signed link or API key; with
R2/S3 storage, a redirect to a presigned URL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import FileResponse, RedirectResponse, Response

from genstack.core.storage import LocalStorage, validate_key
from genstack.gateway.routes.common import api_key_id, errors, services
from genstack.http.errors import ApiError

router = APIRouter(prefix="/v1/files", tags=["files"])


def _local_path(storage: LocalStorage, key: str) -> Path:
    """The file of ``key`` inside the store's root, or 404; never a path outside it."""
    try:
        validate_key(key)
    except ValueError:
        raise ApiError(404, "no such file", code="file_not_found") from None
    if key.split("/")[0] == ".meta":
        raise ApiError(404, "no such file", code="file_not_found")
    root = storage.root.resolve()
    path = (root / key).resolve()
    if root not in path.parents or not path.is_file():
        raise ApiError(404, "no such file", code="file_not_found")
    return path


@router.get(
    "/{key:path}",
    summary="Download an artifact",
    description="Links in job results carry `expires` and `signature`; with them no API key "
    "is needed. With R2/S3 storage the answer redirects to a presigned URL.",
    response_class=Response,
    responses=errors(
        401,
        403,
        404,
        extra={
            200: {"content": {"application/octet-stream": {}}},
            307: {"description": "Redirect to a presigned URL"},
        },
    ),
)
async def get_file(
    key: str,
    request: Request,
    expires: Annotated[str | None, Query(max_length=20)] = None,
    signature: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    svc = services(request)
    if signature is not None or expires is not None:
        if not svc.links.signer.verify(key, expires or "", signature or "", time.time()):
            raise ApiError(403, "the link is invalid or has expired", code="invalid_signature")
    elif api_key_id(request) == "anonymous" and not svc.settings.gateway_auth_disabled:
        raise ApiError(401, "a signed link or an API key is needed", code="missing_api_key")
    storage = svc.storage
    if isinstance(storage, LocalStorage):
        path = _local_path(storage, key)
        info = await svc.run_sync(storage.head, key)
        media_type = info.content_type if info and info.content_type else None
        return FileResponse(path, media_type=media_type or "application/octet-stream")
    try:
        validate_key(key)
    except ValueError:
        raise ApiError(404, "no such file", code="file_not_found") from None
    return RedirectResponse(svc.links.url(key, ""), status_code=307)
