"""Every error leaves the gateway in OpenAI's shape: ``{"error": {message, type, param, code}}``."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger(__name__)

_TYPES = {
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


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ApiError(StarletteHTTPException):
    """An error with OpenAI's fields; raise it anywhere in a request."""

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


def error_body(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> bytes:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return json.dumps(body).encode()


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
    """One readable sentence for pydantic's errors, and the first offending field."""
    lines = []
    for error in errors[:5]:
        where = _location(error.get("loc", ()))
        lines.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    param = _location(errors[0].get("loc", ())) if errors else None
    return "; ".join(lines) + more, param or None


_DEFAULT_CODES = {
    401: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc, ApiError):
            return error_response(
                exc.status_code, exc.message, code=exc.code, param=exc.param, headers=exc.headers
            )
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return error_response(
            exc.status_code,
            message,
            code=_DEFAULT_CODES.get(exc.status_code),
            headers=exc.headers,
        )

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())
        content_type = request.headers.get("content-type", "")
        if (
            content_type
            and "json" not in content_type
            and any(tuple(e.get("loc", ()))[:1] == ("body",) for e in errors)
        ):
            return error_response(
                400,
                f"the body must be JSON sent as Content-Type: application/json "
                f"(got {content_type[:80]!r})",
                code="invalid_content_type",
            )
        if any(e.get("type") == "json_invalid" for e in errors):
            detail = next(e for e in errors if e.get("type") == "json_invalid")
            reason = (detail.get("ctx") or {}).get("error", "")
            return error_response(
                400, f"the body is not valid JSON: {reason}".rstrip(": "), code="invalid_json"
            )
        message, param = validation_message(errors)
        return error_response(400, message, code="invalid_value", param=param)

    async def on_redis_error(request: Request, exc: Exception) -> Response:
        log.warning("redis unavailable", extra={"path": request.url.path, "err": str(exc)})
        return error_response(
            503,
            "the job store (Redis) is unavailable; retry shortly",
            code="redis_unavailable",
            headers={"Retry-After": "5"},
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"path": request.url.path})
        return error_response(500, "internal error; see the gateway log", code="internal_error")

    app.add_exception_handler(StarletteHTTPException, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(RedisError, on_redis_error)
    app.add_exception_handler(Exception, on_unexpected)
