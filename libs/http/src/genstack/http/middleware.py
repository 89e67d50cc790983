"""The one ASGI middleware every request to a genstack server passes: request id, API key,
body size limit, metrics and the access log. Plain ASGI (no BaseHTTPMiddleware), so streamed
answers pass through untouched and the per-request cost stays small.

Each service states its policy (:class:`EdgePolicy`): which paths are open, its body limits,
its metrics (through :class:`RequestMetrics`, so each keeps its own Prometheus registry) and
whether it logs each request.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genstack.http.auth import ApiKeys, bearer_token
from genstack.http.errors import ApiError, error_body

# Always open: the probes of orchestrators, which hold no key.
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/openapi.json"})
METRICS_PATH = "/metrics"

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def open_paths(*, docs: bool, metrics: bool) -> frozenset[str]:
    """The probes, plus the docs and /metrics where the service leaves them open."""
    paths = set(PROBE_PATHS)
    if docs:
        paths |= DOC_PATHS
    if metrics:
        paths.add(METRICS_PATH)
    return frozenset(paths)


class RequestIdFilter(logging.Filter):
    """Adds the current request id to every log record made while serving a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


def log_request_ids() -> None:
    """Put the request id on the records of every handler of the root logger (call it once
    logging is configured)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())


class RequestMetrics(Protocol):
    """What the middleware reports of each answered request."""

    def observe_request(
        self, method: str, route: str, status: int, first_byte_s: float | None
    ) -> None:
        """``route`` is the route template ("unmatched" for none); ``first_byte_s`` the time
        to the start of the answer (None when none was sent)."""


class BodyTooLargeError(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"the request body is larger than {limit} bytes", code="request_too_large"
        )


# (path, query string) -> whether the request carries a signed link that its route checks.
SignedLink = Callable[[str, bytes], bool]


@dataclass
class EdgePolicy:
    #: None: no auth at all (a server without keys, or one behind the operator's own auth).
    keys: ApiKeys | None
    open_paths: frozenset[str] = PROBE_PATHS
    default_body_limit: int = 1024 * 1024
    #: (method, path prefix, limit); the first match wins.
    body_limits: Sequence[tuple[str, str, int]] = field(default_factory=list)
    #: Lets a request without a key through when it carries a signed link.
    signed_link: SignedLink | None = None
    #: Logs one line per request (not for open paths); None: no access log.
    access_log: logging.Logger | None = None

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


class EdgeMiddleware:
    def __init__(
        self, app: ASGIApp, *, policy: EdgePolicy, metrics: RequestMetrics | None = None
    ) -> None:
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
                await _send_error(send_wrapper, *refusal)
                return
            limit = self.policy.body_limit(method, path)
            declared = _header(scope, b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                error = BodyTooLargeError(limit)
                await _send_error(send_wrapper, 413, error.message, "request_too_large")
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
            self._record(scope, method, path, status, started, first_byte)
            request_id_var.reset(token)

    def _record(
        self,
        scope: Scope,
        method: str,
        path: str,
        status: int,
        started: float,
        first_byte: float | None,
    ) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        if self.metrics is not None:
            # No answer started: an exception went up to Starlette's 500 handler.
            self.metrics.observe_request(
                method,
                template,
                status or 500,
                None if first_byte is None else first_byte - started,
            )
        log = self.policy.access_log
        if (
            log is not None
            and log.isEnabledFor(logging.INFO)
            and path not in self.policy.open_paths
        ):
            log.info(
                "request",
                extra={
                    "method": method,
                    "path": path,
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )

    def _refuse(self, scope: Scope, method: str, path: str) -> tuple[int, str, str] | None:
        """(status, message, code) when the request may not pass, else None."""
        keys = self.policy.keys
        if keys is None or method == "OPTIONS" or path in self.policy.open_paths:
            return None
        token = bearer_token(_header(scope, b"authorization"))
        if token is None:
            signed = self.policy.signed_link
            if signed is not None and signed(path, scope.get("query_string", b"")):
                return None  # the route checks the signature
            return (
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                "missing_api_key",
            )
        key_id = keys.identify(token)
        if key_id is None:
            return 401, "Incorrect API key provided.", "invalid_api_key"
        scope.setdefault("state", {})["api_key_id"] = key_id
        return None


async def _send_error(send: Send, status: int, message: str, code: str) -> None:
    body = error_body(status, message, code=code)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="genstack"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
