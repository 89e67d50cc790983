"""Every error leaves a genstack server in OpenAI's shape:
``{"error": {"message", "type", "param", "code"}}``, with one status -> type map.

The map follows OpenAI's own answers: a bad key (401) is an ``invalid_request_error`` with
code ``invalid_api_key``, an unknown model (404) one with ``model_not_found``, a full queue
(429) a ``rate_limit_error``, and anything of 500 and above (503 "overloaded" included) a
``server_error``. Invalid values are 400 (never 422: OpenAI does not answer 422), and the
``code`` says what exactly was wrong.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger(__name__)

ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}

# Codes for errors raised without one (Starlette's own 404 and 405, FastAPI's 400s).
DEFAULT_CODES: Mapping[int, str] = {
    401: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}


def error_type(status: int) -> str:
    """OpenAI's error ``type`` for an HTTP status."""
    return ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """The schema of every error answer (for OpenAPI)."""

    error: ErrorDetail


class ApiError(StarletteHTTPException):
    """An error with OpenAI's fields; raise it anywhere in a request. (An HTTPException, so
    FastAPI lets it through body parsing: the body limit raises it from ``receive``.)"""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, dict(headers) if headers else None)
        self.message = message
        self.code = code
        self.param = param


def error_object(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """The ``{"error": {...}}`` object (for a body, or an SSE error event)."""
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


def error_body(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> bytes:
    return json.dumps(error_object(status, message, code=code, param=param)).encode()


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_body(status, message, code=code, param=param),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _location(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:] if len(parts) > 1 else parts
    return ".".join(parts)


def validation_message(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """One readable sentence for pydantic's errors (a request's or a ``model_validate``'s),
    and the first offending field, dotted, without the body/query prefix."""
    lines = []
    for error in errors[:5]:
        where = _location(error.get("loc", ()))
        lines.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    param = _location(errors[0].get("loc", ())) if errors else None
    return ("; ".join(lines) + more) or "invalid request", param or None


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, ApiError):
        return error_response(
            exc.status_code, exc.message, code=exc.code, param=exc.param, headers=exc.headers
        )
    message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    return error_response(
        exc.status_code, message, code=DEFAULT_CODES.get(exc.status_code), headers=exc.headers
    )


def _takes_form(request: Request) -> bool:
    """Whether the matched route reads a form (a voice upload) rather than JSON."""
    body = getattr(request.scope.get("route"), "body_field", None)
    return body is not None and isinstance(body.field_info, params.Form)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    content_type = request.headers.get("content-type", "")
    if (
        content_type
        and "json" not in content_type
        and not _takes_form(request)
        and any(tuple(e.get("loc", ()))[:1] == ("body",) for e in errors)
    ):
        return error_response(
            400,
            f"the body must be JSON sent as Content-Type: application/json "
            f"(got {content_type[:80]!r})",
            code="invalid_content_type",
        )
    invalid_json = [e for e in errors if e.get("type") == "json_invalid"]
    if invalid_json:
        reason = (invalid_json[0].get("ctx") or {}).get("error", "")
        return error_response(
            400, f"the body is not valid JSON: {reason}".rstrip(": "), code="invalid_json"
        )
    message, param = validation_message(errors)
    return error_response(400, message, code="invalid_value", param=param)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.url.path})
    return error_response(500, "internal error; see the server log", code="internal_error")


def install_error_handlers(app: FastAPI) -> None:
    """OpenAI-shaped answers for ApiError, Starlette's HTTP errors, request validation (400,
    naming the field) and anything unexpected (500, logged). A service adds handlers of its
    own (the gateway's RedisError -> 503) on top."""

    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
