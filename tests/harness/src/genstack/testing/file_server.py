"""A real HTTP/1.1 file server on loopback for provisioning tests (every service that downloads).

It serves byte strings by path with single-range support (206/416), keep-alive, HEAD, and
redirects, and it emulates the parts of the Hugging Face Hub (``/<repo>/resolve/<rev>/<path>``
answering 302 to a CDN with ``X-Linked-Etag``/``X-Linked-Size``, the tree API) and of CivitAI
(model-version API, download redirect to presigned storage) that provisioning talks to.

Tests can make it misbehave per path: drop the connection after N bytes, stall after N
bytes, reset it, serve corrupted bytes, answer an error status, or send one response slowly.
Like a CDN it can cap what each connection carries (``rate_bps``, a token bucket per TCP
connection, whatever the number of requests on it) and push back when too many file
requests are in flight at once (``max_active``: 429 or 503 with ``Retry-After``, or a reset
connection). It records every request (method, path, headers, when, how many file requests
were in flight) and the body bytes it sent per path, so a test can tell what was fetched,
how many connections were used at once and with which credentials.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import struct
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass
class Fault:
    """What to do to the next matching request (consumed once; ``times`` in a row)."""

    kind: str  # "drop" | "stall" | "reset" | "corrupt" | "status" | "ignore-range" | "slow"
    after_bytes: int = 0  # drop/stall/reset: body bytes sent first
    status: int = 503
    retry_after: str | None = None
    times: int = 1
    rate_bps: float = 256 * 1024  # slow: this response's pace


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    range: str | None
    at: float = 0.0  # time.monotonic() when it arrived
    active: int = 0  # file requests in flight with it (itself included)
    connection: int = 0  # which TCP connection (numbered from 1 in order of arrival)


@dataclass
class FileServer:
    """Start with :meth:`start`; ``url`` is ``http://<host>:<port>``."""

    host: str = "127.0.0.1"
    files: dict[str, bytes] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    extra_headers: dict[str, dict[str, str]] = field(default_factory=dict)
    json_routes: dict[str, Any] = field(default_factory=dict)
    rate_bps: float | None = None  # cap of each connection's file bodies (bytes/s)
    chunk: int = 64 * 1024
    no_ranges: set[str] = field(default_factory=set)  # paths served whole, Range ignored
    chunked: set[str] = field(default_factory=set)  # ... and without a Content-Length
    # Pushback: a file request arriving with this many already in flight is answered with
    # ``over_limit`` ("429", "503": that status with ``retry_after``; "reset": RST).
    max_active: int | None = None
    over_limit: str = "503"
    retry_after: str | None = None
    bind_port: int = 0  # 0: any free port

    def __post_init__(self) -> None:
        self.requests: list[Seen] = []
        self.sent: dict[str, int] = defaultdict(int)
        self.faults: dict[str, list[Fault]] = defaultdict(list)
        self.pushed_back = 0  # requests answered with over_limit
        self.active = 0  # file requests in flight now
        self.connections = 0  # TCP connections accepted so far
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control

    def start(self) -> FileServer:
        server = ThreadingHTTPServer((self.host, self.bind_port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def add(self, path: str, data: bytes, **headers: str) -> str:
        self.files[path] = data
        if headers:
            self.extra_headers[path] = {k.replace("_", "-"): v for k, v in headers.items()}
        return self.url + path

    def fault(self, path: str, fault: Fault) -> None:
        with self._lock:
            self.faults[path].append(fault)

    def take_fault(self, path: str) -> Fault | None:
        with self._lock:
            queue = self.faults.get(path)
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
            return fault

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)

    def count_sent(self, path: str, n: int) -> None:
        with self._lock:
            self.sent[path] += n

    def requests_for(self, path: str, method: str | None = None) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.path == path and method in (None, r.method)]

    def peak_active(self, path: str | None = None) -> int:
        """The most file requests (for ``path``, or any) that were in flight at once."""
        with self._lock:
            return max((r.active for r in self.requests if path in (None, r.path)), default=0)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.sent.clear()
            self.pushed_back = 0

    def _enter(self, seen: Seen) -> bool:
        """Count a file request in; False (and not counted) when it is over ``max_active``."""
        with self._lock:
            if self.max_active is not None and self.active >= self.max_active:
                self.pushed_back += 1
                seen.active = self.active
                self.requests.append(seen)
                return False
            self.active += 1
            seen.active = self.active
            self.requests.append(seen)
            return True

    def _leave(self) -> None:
        with self._lock:
            self.active -= 1

    def _connected(self) -> int:
        with self._lock:
            self.connections += 1
            return self.connections


def _handler_for(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.number = server._connected()
            # The connection's token bucket: ``rate_bps`` whatever the requests on it, with
            # at most one chunk of burst after an idle spell.
            self.tokens = float(server.chunk)
            self.refilled = time.monotonic()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def throttle(self, n: int) -> None:
            rate = server.rate_bps
            if not rate:
                return
            now = time.monotonic()
            self.tokens = min(
                float(max(server.chunk, n)), self.tokens + (now - self.refilled) * rate
            )
            self.refilled = now
            self.tokens -= n
            if self.tokens < 0:
                time.sleep(-self.tokens / rate)

        def reset(self) -> None:
            """Abort the connection with an RST (SO_LINGER 0), as an overloaded server does."""
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def do_GET(self) -> None:
            self._serve(head=False)

        def _serve(self, head: bool) -> None:
            split = urlsplit(self.path)
            path = unquote(split.path)
            seen = Seen(
                self.command,
                path,
                dict(self.headers.items()),
                self.headers.get("Range"),
                time.monotonic(),
                connection=self.number,
            )
            if path not in server.files or path in server.redirects or path in server.json_routes:
                server.record(seen)
            elif not server._enter(seen):
                if server.over_limit == "reset":
                    self.reset()
                else:
                    self._empty(int(server.over_limit), {"Retry-After": server.retry_after or ""})
                return
            else:
                try:
                    self._serve_file(path, split.query, head)
                finally:
                    server._leave()
                return
            self._serve_other(path, head)

        def _serve_file(self, path: str, query: str, head: bool) -> None:
            fault = server.take_fault(path)
            if fault is not None and fault.kind == "status":
                self._empty(fault.status, {"Retry-After": fault.retry_after or ""})
                return
            if fault is not None and fault.kind == "reset" and fault.after_bytes == 0:
                self.reset()
                return
            data = server.files[path]
            if path in server.chunked:
                self._chunked(path, data, head)
                return
            if path in server.no_ranges:
                fault = fault or Fault("ignore-range")
            self._file(path, data, head, fault, parse_qs(query))

        def _serve_other(self, path: str, head: bool) -> None:
            fault = server.take_fault(path)
            if fault is not None and fault.kind == "status":
                self._empty(fault.status, {"Retry-After": fault.retry_after or ""})
                return
            if path in server.redirects:
                target = server.redirects[path]
                headers = {"Location": target, **server.extra_headers.get(path, {})}
                self._empty(302, headers)
                return
            if path in server.json_routes:
                body = json.dumps(server.json_routes[path]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)
                return
            self._empty(404, {})

        def _chunked(self, path: str, data: bytes, head: bool) -> None:
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if head:
                return
            for i in range(0, len(data), server.chunk):
                piece = data[i : i + server.chunk]
                self.throttle(len(piece))
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                server.count_sent(path, len(piece))
            self.wfile.write(b"0\r\n\r\n")

        def _file(
            self, path: str, data: bytes, head: bool, fault: Fault | None, query: Any
        ) -> None:
            size = len(data)
            start, end = 0, size  # end exclusive
            status = 200
            header = self.headers.get("Range")
            if header and not (fault is not None and fault.kind == "ignore-range"):
                match = _RANGE.match(header.strip())
                if not match:
                    self._empty(416, {"Content-Range": f"bytes */{size}"})
                    return
                first, last = match.groups()
                if first:
                    start = int(first)
                    end = min(size, int(last) + 1) if last else size
                else:
                    start, end = max(0, size - int(last)), size
                if start >= size or start >= end:
                    self._empty(416, {"Content-Range": f"bytes */{size}"})
                    return
                status = 206
            self.send_response(status)
            self.send_header("Content-Length", str(end - start))
            if path not in server.no_ranges:
                self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("ETag", '"' + hashlib.sha1(data).hexdigest() + '"')
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            for key, value in server.extra_headers.get(path, {}).items():
                self.send_header(key, value)
            self.end_headers()
            if head:
                return
            body = memoryview(data)[start:end]
            if fault is not None and fault.kind == "corrupt":
                mutable = bytearray(body)
                for i in range(0, len(mutable), 4096):
                    mutable[i] ^= 0xFF
                body = memoryview(bytes(mutable))
            limit = len(body)
            if fault is not None and fault.kind in ("drop", "stall", "reset"):
                limit = min(limit, fault.after_bytes)
            slow = fault.rate_bps if fault is not None and fault.kind == "slow" else None
            sent = 0
            started = time.monotonic()
            try:
                while sent < limit:
                    piece = body[sent : min(limit, sent + server.chunk)]
                    self.throttle(len(piece))
                    self.wfile.write(piece)
                    sent += len(piece)
                    server.count_sent(path, len(piece))
                    if slow:
                        ahead = sent / slow - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)
                self.wfile.flush()
                if fault is not None and fault.kind == "stall":
                    server._stop.wait(60)  # hold the connection open, send nothing
                if fault is not None and fault.kind == "reset":
                    self.reset()
                elif fault is not None and fault.kind in ("drop", "stall"):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
            except (BrokenPipeError, ConnectionResetError, OSError):
                self.close_connection = True

        def _empty(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                if value:
                    self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


# ---------------------------------------------------------------------- hub emulation


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def add_hf_file(
    hub: FileServer,
    cdn: FileServer,
    repo: str,
    path: str,
    data: bytes,
    *,
    revision: str = "main",
    lfs: bool = True,
    advertised_sha: str | None = None,
) -> None:
    """Publish ``data`` as ``repo``/``path`` the way the Hub does: an LFS file's resolve URL
    redirects to the CDN and carries its sha256 and size; a small git file is served by the
    hub itself with a git-sha1 ETag."""
    resolve = f"/{repo}/resolve/{revision}/{path}"
    if lfs:
        blob = f"/blobs/{repo}/{path}"
        cdn.add(blob, data)
        hub.redirects[resolve] = cdn.url + blob + "?X-Amz-Signature=presigned"
        hub.extra_headers[resolve] = {
            "X-Linked-Etag": f'"{advertised_sha or sha256(data)}"',
            "X-Linked-Size": str(len(data)),
            "X-Repo-Commit": "0" * 40,
        }
    else:
        hub.add(resolve, data)


def add_hf_tree(
    hub: FileServer,
    repo: str,
    files: dict[str, bytes],
    *,
    revision: str = "main",
    lfs_over: int = 1024,
) -> None:
    """The tree listing of ``repo`` (files larger than ``lfs_over`` are LFS, with oid=sha256)."""
    listing = []
    for path, data in files.items():
        item: dict[str, Any] = {
            "type": "file",
            "path": path,
            "size": len(data),
            "oid": hashlib.sha1(data).hexdigest(),
        }
        if len(data) > lfs_over:
            item["lfs"] = {"oid": sha256(data), "size": len(data), "pointerSize": 130}
        listing.append(item)
    listing.append({"type": "directory", "path": "sub", "oid": "0" * 40, "size": 0})
    hub.json_routes[f"/api/models/{repo}/tree/{revision}"] = listing
