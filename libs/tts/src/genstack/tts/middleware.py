"""Pure ASGI middleware (streaming-safe): bearer auth, request body limits, metrics."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genstack.tts.errors import error_body
from genstack.tts.metrics import TTSMetrics

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"})


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class BearerAuthMiddleware:
    """Requires ``Authorization: Bearer <key>`` with one of ``keys`` (constant-time compare);
    health, metrics, docs and CORS preflights stay open. No keys: everything is open."""

    def __init__(self, app: ASGIApp, keys: Sequence[str]) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys if key]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.keys
            or scope["method"] == "OPTIONS"
            or scope["path"] in OPEN_PATHS
        ):
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given = token.strip()
        if not any(hmac.compare_digest(given, key) for key in self.keys):
            message = "missing bearer token" if not given else "invalid bearer token"
            await _send_json(
                send,
                401,
                error_body(401, message, code="invalid_api_key"),
                [(b"www-authenticate", b'Bearer realm="genstack"')],
            )
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuses request bodies over ``limit_for(path)`` bytes with 413, whether announced
    by Content-Length or only found while reading (chunked uploads)."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _send_json(send, 413, _too_large(limit))
                return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLargeError(limit)
            return message

        await self.app(scope, limited_receive, send)


class BodyTooLargeError(HTTPException):
    """Raised from ``receive`` when a body without Content-Length passes the limit; FastAPI
    lets HTTPExceptions through body parsing, and the error handler keeps the code."""

    code = "request_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


def _too_large(limit: int) -> dict[str, Any]:
    return error_body(413, f"request body larger than {limit} bytes", code="request_too_large")


class MetricsMiddleware:
    """Counts answered requests by route template and status."""

    def __init__(self, app: ASGIApp, metrics: TTSMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, str(status)).inc()
