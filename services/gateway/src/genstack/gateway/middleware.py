"""The one ASGI middleware every request passes: request id, API key, body size limit,
metrics and the access log. Plain ASGI (no BaseHTTPMiddleware), so streamed answers
pass through untouched and the per-request cost stays small."""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genstack.gateway.auth import ApiKeys, bearer_token
from genstack.gateway.errors import ApiError, error_body
from genstack.gateway.metrics import GatewayMetrics

access_log = logging.getLogger("genstack.gateway.access")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdFilter(logging.Filter):
    """Adds the current request id to every log record made while serving a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


class BodyTooLargeError(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"the request body is larger than {limit} bytes", code="request_too_large"
        )


@dataclass
class Policy:
    keys: ApiKeys
    auth_disabled: bool = False
    open_paths: frozenset[str] = frozenset({"/healthz", "/readyz"})
    default_body_limit: int = 1024 * 1024
    # (method, path prefix) -> limit; the first match wins.
    body_limits: list[tuple[str, str, int]] = field(default_factory=list)
    signed_prefix: str = "/v1/files/"

    def body_limit(self, method: str, path: str) -> int:
        for limit_method, prefix, limit in self.body_limits:
            if method == limit_method and path.startswith(prefix):
                return limit
        return self.default_body_limit


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, *, policy: Policy, metrics: GatewayMetrics) -> None:
        self.app = app
        self.policy = policy
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = _header(scope, b"x-request-id")
        request_id = incoming.decode("latin-1") if incoming else ""
        if not _REQUEST_ID.match(request_id):
            request_id = uuid.uuid4().hex
        token = request_id_var.set(request_id)
        method: str = scope["method"]
        path: str = scope["path"]
        status = 0
        first_byte: float | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status, first_byte
            if message["type"] == "http.response.start":
                status = message["status"]
                first_byte = time.perf_counter()
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            refusal = self._refuse(scope, method, path)
            if refusal is not None:
                await self._send_error(send_wrapper, *refusal)
                return
            limit = self.policy.body_limit(method, path)
            declared = _header(scope, b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                error = BodyTooLargeError(limit)
                await self._send_error(send_wrapper, 413, error.message, error.code)
                return
            received = 0

            async def receive_limited() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise BodyTooLargeError(limit)
                return message

            await self.app(scope, receive_limited, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if status:
                self.metrics.requests.labels(method, template, str(status)).inc()
                if first_byte is not None:
                    self.metrics.latency.labels(template).observe(first_byte - started)
            if access_log.isEnabledFor(logging.INFO) and template not in self.policy.open_paths:
                access_log.info(
                    "request",
                    extra={
                        "method": method,
                        "path": path,
                        "status": status,
                        "ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            request_id_var.reset(token)

    def _refuse(self, scope: Scope, method: str, path: str) -> tuple[int, str, str] | None:
        """(status, message, code) when the request may not pass, else None."""
        if method == "OPTIONS" or path in self.policy.open_paths or self.policy.auth_disabled:
            return None
        key_id = None
        token = bearer_token(_header(scope, b"authorization"))
        if token is not None:
            key_id = self.policy.keys.identify(token)
            if key_id is None:
                return 401, "Incorrect API key provided.", "invalid_api_key"
        elif path.startswith(self.policy.signed_prefix) and b"signature=" in scope.get(
            "query_string", b""
        ):
            return None  # a signed file link: the route checks the signature
        else:
            return (
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                "missing_api_key",
            )
        scope.setdefault("state", {})["api_key_id"] = key_id
        return None

    @staticmethod
    async def _send_error(send: Send, status: int, message: str, code: str | None) -> None:
        body = error_body(status, message, code=code)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="genstack"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
