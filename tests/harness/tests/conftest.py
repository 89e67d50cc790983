"""A small HTTP/1.1 upstream with known framing, to test FaultProxy's relaying exactly."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

FILE_BODY = bytes(range(256)) * 40  # 10240 bytes
CHUNKS = [b"alpha-" * 100, b"beta-" * 3000, b"gamma"]


class Gates:
    """Events that let a test interleave itself with the upstream's sending and receiving."""

    def __init__(self) -> None:
        self.first_part_relayed = threading.Event()  # set by the test
        self.first_part_received = threading.Event()  # set by the upstream


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like moto's server
    server: Upstream

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, *, send_body: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _read_chunked(self, on_first: threading.Event | None = None) -> bytes:
        data = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b""):
                    pass
                return data
            data += self.rfile.read(size)
            self.rfile.read(2)
            if on_first is not None:
                on_first.set()

    def do_HEAD(self) -> None:
        self._send(200, FILE_BODY, send_body=False)

    def do_GET(self) -> None:
        if self.path == "/file":
            self._send(200, FILE_BODY)
        elif self.path in ("/chunked", "/stream"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i, chunk in enumerate(CHUNKS):
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
                if i == 0 and self.path == "/stream":
                    # Hold the rest back until the test saw the first chunk through the proxy:
                    # a proxy that buffers whole responses never gets that far.
                    self.server.gates.first_part_relayed.wait(timeout=10)
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/no-length":
            # HTTP/1.0-style: the body ends when the connection closes.
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until-close")
            self.close_connection = True
        else:
            self._send(404, b"")

    def do_PUT(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked(self.server.gates.first_part_received)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        answer = f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()
        self._send(200, answer)


class Upstream(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops SYNs under the concurrency test (1 s stalls)

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.gates = Gates()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
