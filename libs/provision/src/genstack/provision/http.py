"""A small HTTP/1.1 client for big downloads, on :mod:`http.client`.

Why not requests/httpx: the body of a multi-gigabyte file should go from the socket into a
reusable buffer and from there to the file with no per-chunk allocation
(``readinto1`` -> ``os.pwrite``), and the rules for credentials across redirects must be
exactly ours:

- a token is sent only to the origin (scheme, host, port) it was configured for
  (``HF_TOKEN`` -> the Hugging Face endpoint, ``CIVITAI_API_KEY`` -> CivitAI); every redirect
  hop recomputes the headers, so a presigned storage URL on another host never sees it;
- a browser-like User-Agent (some hosts refuse python clients);
- keep-alive connections, one :class:`Session` per thread;
- ``HTTP(S)_PROXY`` / ``NO_PROXY`` are honoured (CONNECT tunnel for https).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import ssl
import threading
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Self
from urllib.parse import urljoin, urlsplit

__all__ = [
    "USER_AGENT",
    "Hop",
    "HostToken",
    "HttpError",
    "Response",
    "Session",
    "origin_of",
    "safe_url",
    "shared_ssl_context",
]

USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 genstack-provision/0.1"
)
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
# A body read wakes up only once this much has arrived (SO_RCVLOWAT): a connection capped at
# a few MB/s otherwise hands over a few KiB per wake-up, and each costs a round of Python
# under the GIL (3x aria2c's CPU per GB behind a capped proxy). Half the stall threshold, so
# the stall watchdog still sees a slow connection move.
LOWAT = 128 * 1024
# Body bytes that may sit above the kernel (the response's read buffer, a TLS record):
# the wake-up threshold stays this far below what is still to come, or it would wait for
# bytes that never arrive.
_LOWAT_MARGIN = io.DEFAULT_BUFFER_SIZE + 64 * 1024


class HttpError(OSError):
    """A request failed at the HTTP level (status) or the connection broke."""

    def __init__(self, message: str, *, status: int | None = None, url: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.url = url


def origin_of(url: str) -> tuple[str, str, int]:
    split = urlsplit(url)
    scheme = split.scheme.lower()
    port = split.port or (443 if scheme == "https" else 80)
    return scheme, (split.hostname or "").lower(), port


@dataclass(frozen=True)
class HostToken:
    """A bearer token and the one origin (from a base URL) it may be sent to."""

    base_url: str
    token: str = field(repr=False)

    def applies_to(self, url: str) -> bool:
        return origin_of(url) == origin_of(self.base_url)


@dataclass(frozen=True)
class Hop:
    url: str
    status: int
    headers: Message


class Response:
    """A response whose body is still on the wire; close it (or use ``with``)."""

    def __init__(
        self,
        session: Session,
        key: tuple[str, str, int],
        raw: http.client.HTTPResponse,
        url: str,
        hops: list[Hop],
    ) -> None:
        self._session = session
        self._key = key
        self.raw = raw
        self.url = url
        self.status = raw.status
        self.headers = raw.headers
        self.hops = hops  # every redirect before this response, first request first
        self.length = self._content_length()
        self._read = 0
        self._lowat = 1

    def _content_length(self) -> int | None:
        if getattr(self.raw, "_method", None) == "HEAD" or self.status in (204, 304):
            return 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return None
        value = self.headers.get("Content-Length")
        return int(value) if value and value.isdigit() else None

    def header_any(self, name: str) -> str | None:
        """``name`` from this response or, failing that, the latest redirect hop with it."""
        value = self.headers.get(name)
        if value is not None:
            return value
        for hop in reversed(self.hops):
            value = hop.headers.get(name)
            if value is not None:
                return value
        return None

    @property
    def socket(self) -> socket.socket | None:
        conn = self._session.connections.get(self._key)
        return None if conn is None else conn.sock

    def readinto(self, buffer: memoryview) -> int:
        """Read what is available (at most one system call when the body has a length)
        into ``buffer``; 0 at the end of the body."""
        if self.length is None:
            n = self.raw.readinto(buffer)
        else:
            remaining = self.length - self._read
            if remaining <= 0:
                return 0
            fp = self.raw.fp
            if fp is None:
                return 0
            lowat = max(1, min(LOWAT, remaining - _LOWAT_MARGIN))
            if lowat != self._lowat:
                self._set_lowat(lowat)
            n = (
                fp.readinto1(buffer[:remaining])
                if remaining < len(buffer)
                else fp.readinto1(buffer)
            )
            if n == 0:
                raise HttpError(
                    f"connection closed after {self._read} of {self.length} bytes", url=self.url
                )
        self._read += n
        return n

    def wake_on_any_byte(self) -> None:
        """From another thread: let the read in progress return whatever has arrived (the
        kernel wakes a waiting poll when the threshold is lowered); the next read raises it
        again. For a connection gone quiet: the bytes it did send are kept, not left under
        the threshold when the stall timeout cuts it."""
        self._set_lowat(1)

    def _set_lowat(self, lowat: int) -> None:
        sock = self.socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)
        self._lowat = lowat

    def read_all(self, limit: int = 16 * 2**20) -> bytes:
        data = self.raw.read(limit + 1)
        if len(data) > limit:
            raise HttpError(f"response body over {limit} bytes", url=self.url)
        self._read += len(data)
        return data

    def close(self, *, reuse: bool = True) -> None:
        """Release the connection: kept for the next request only when the body was read to
        the end and the server allows keep-alive; otherwise closed."""
        complete = self.length is not None and self._read >= self.length
        if reuse and complete and not self.raw.will_close:
            if self._lowat != 1:  # the next response's headers are read byte by byte
                self._set_lowat(1)
            self.raw.close()
        else:
            self.raw.close()
            self._session.drop(self._key)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Session:
    """Keep-alive connections by origin, for one thread."""

    def __init__(
        self,
        tokens: Sequence[HostToken] = (),
        *,
        connect_timeout: float = 15.0,
        read_timeout: float = 60.0,
        user_agent: str = USER_AGENT,
        ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        self.tokens = tuple(tokens)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.user_agent = user_agent
        # Built on the first https connection: loading the CA bundle takes tens of ms, which
        # a plain-http download (or each of 16 workers) should not pay.
        self._ssl = ssl_context
        self.connections: dict[tuple[str, str, int], http.client.HTTPConnection] = {}
        self._proxies = urllib.request.getproxies()

    def headers_for(self, url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent, "Accept-Encoding": "identity"}
        for token in self.tokens:
            if token.applies_to(url):
                headers["Authorization"] = f"Bearer {token.token}"
                break
        headers.update(extra or {})
        return headers

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        follow_redirects: bool = True,
    ) -> Response:
        """Send a request (following redirects unless told not to) and return the response
        with its headers read. Raises HttpError when the connection fails."""
        hops: list[Hop] = []
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send(method, url, headers, hops)
            if not follow_redirects or response.status not in REDIRECTS:
                return response
            location = response.headers.get("Location")
            if not location:
                return response
            # Drain a small redirect body so the connection can be reused.
            with contextlib.suppress(HttpError, OSError, http.client.HTTPException):
                response.read_all(limit=64 * 1024)
            response.close()
            hops.append(Hop(url, response.status, response.headers))
            url = urljoin(url, location)
            if response.status == 303:
                method = "GET"
        raise HttpError(f"more than {MAX_REDIRECTS} redirects", url=url)

    def _send(
        self, method: str, url: str, headers: Mapping[str, str] | None, hops: list[Hop]
    ) -> Response:
        key = origin_of(url)
        split = urlsplit(url)
        target = split.path or "/"
        if split.query:
            target += "?" + split.query
        all_headers = self.headers_for(url, headers)
        # One retry on a fresh connection: a kept-alive one may have been closed by the server.
        for attempt in (0, 1):
            reused = key in self.connections
            try:
                conn = self._connection(key)
                conn.request(method, self._target(key, url, target), headers=all_headers)
                raw = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self.drop(key)
                if attempt == 0 and reused and not isinstance(exc, TimeoutError):
                    continue
                raise HttpError(
                    f"{method} {safe_url(url)}: {type(exc).__name__}: {exc}", url=url
                ) from exc
            return Response(self, key, raw, url, hops)
        raise AssertionError("unreachable")

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        elif not isinstance(self._ssl, ssl.SSLContext):
            self._ssl = self._ssl()
        return self._ssl

    def _proxy_for(self, scheme: str, host: str) -> str | None:
        proxy = self._proxies.get(scheme)
        if not proxy or urllib.request.proxy_bypass(host):
            return None
        return proxy

    def _target(self, key: tuple[str, str, int], url: str, target: str) -> str:
        # A plain-http request through a proxy names the absolute URL.
        scheme, host, _ = key
        return url if scheme == "http" and self._proxy_for(scheme, host) else target

    def _connection(self, key: tuple[str, str, int]) -> http.client.HTTPConnection:
        conn = self.connections.get(key)
        if conn is not None:
            return conn
        scheme, host, port = key
        proxy = self._proxy_for(scheme, host)
        if proxy:
            p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            proxy_host, proxy_port = p.hostname or "", p.port or 80
            if scheme == "https":
                conn = http.client.HTTPSConnection(
                    proxy_host, proxy_port, timeout=self.connect_timeout, context=self.ssl_context
                )
                conn.set_tunnel(host, port)
            else:
                conn = http.client.HTTPConnection(
                    proxy_host, proxy_port, timeout=self.connect_timeout
                )
        elif scheme == "https":
            conn = http.client.HTTPSConnection(
                host, port, timeout=self.connect_timeout, context=self.ssl_context
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.connect_timeout)
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(self.read_timeout)
        with contextlib.suppress(OSError):
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections[key] = conn
        return conn

    def drop(self, key: tuple[str, str, int]) -> None:
        conn = self.connections.pop(key, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for key in list(self.connections):
            self.drop(key)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def shared_ssl_context() -> Callable[[], ssl.SSLContext]:
    """One default TLS context for many sessions, built when the first needs it."""
    lock = threading.Lock()
    built: list[ssl.SSLContext] = []

    def get() -> ssl.SSLContext:
        with lock:
            if not built:
                built.append(ssl.create_default_context())
            return built[0]

    return get


def safe_url(url: str) -> str:
    """The URL without its query string: presigned URLs carry credentials there."""
    split = urlsplit(url)
    return f"{split.scheme}://{split.netloc}{split.path}" + ("?…" if split.query else "")
