"""An HTTP/1.1 reverse proxy that drops, fails or delays requests on the way to a real server.

Put it between boto3 and the S3 server to see what retries, idempotency and verification do
when the network and the store misbehave. It runs an asyncio loop in a background thread, so
tests stay synchronous; bodies stream through in both directions (see http_relay).
"""

from __future__ import annotations

import asyncio
import enum
import random
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from genstack.testing.http_relay import (
    Framing,
    ProtocolError,
    read_head,
    relay_body,
    request_framing,
    response_framing,
)

__all__ = ["FaultProxy"]

ERROR_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>InternalError</Code><Message>injected by FaultProxy</Message></Error>"
)
HEAD_LIMIT = 256 * 1024  # also the stream buffer size: big enough for throughput
# Never sent upstream: the proxy answers "100 Continue" itself (see _serve_one).
NOT_FORWARDED = frozenset({"expect"})
_CONNECTION_ERRORS = (
    ConnectionError,
    OSError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    ProtocolError,
)


class _Fault(enum.Enum):
    NONE = "none"
    ERROR = "error"
    DROP = "drop"


class _Upstream:
    """One connection to the upstream server, reused while both sides keep it alive."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


class FaultProxy:
    """Reverse proxy on 127.0.0.1 (a free port) in front of ``upstream`` ("http://host:port").

    Per request, once it is read in full: with probability ``drop_rate`` the client connection
    is closed without an answer; else with probability ``error_rate`` it gets a
    ``500 InternalError`` S3 error and nothing is forwarded; else, after ``delay_s``, it is
    forwarded and the answer streamed back. Rates and delay may be changed while it runs.
    ``match(method, target)`` (target = path with query string) limits which requests the
    faults apply to; the others are always forwarded.
    """

    def __init__(
        self,
        upstream: str,
        *,
        error_rate: float = 0.0,
        drop_rate: float = 0.0,
        delay_s: float = 0.0,
        seed: int | None = None,
        match: Callable[[str, str], bool] | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self.upstream = upstream
        self._upstream_addr = (parts.hostname, parts.port or 80)
        self.error_rate = error_rate
        self.drop_rate = drop_rate
        self.delay_s = delay_s
        self.match = match
        self._random = random.Random(seed)
        self._lock = threading.Lock()  # set_faults changes all three at once
        self.requests = 0
        # (method, target) of every request, in arrival order: tests count object writes.
        self.seen: list[tuple[str, str]] = []
        self.errors = 0
        self.drops = 0
        self.forwarded = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._port: int | None = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("FaultProxy is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FaultProxy is not started")
        return self._port

    def set_faults(
        self,
        *,
        error_rate: float | None = None,
        drop_rate: float | None = None,
        delay_s: float | None = None,
    ) -> None:
        """Change the given fault settings together; the next request sees the new ones."""
        with self._lock:
            if error_rate is not None:
                self.error_rate = error_rate
            if drop_rate is not None:
                self.drop_rate = drop_rate
            if delay_s is not None:
                self.delay_s = delay_s

    # -- lifecycle (called from the test's thread) --

    def start(self) -> None:
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"FaultProxy->{self.upstream}", daemon=True
        )
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), loop).result(timeout=10)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
            self._loop = self._thread = self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- inside the loop thread --

    async def _open(self) -> None:
        self._server = await asyncio.start_server(
            self._serve_client, "127.0.0.1", 0, limit=HEAD_LIMIT, backlog=1024
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    def _choose_fault(self, method: str, target: str) -> _Fault:
        if self.match is not None and not self.match(method, target):
            return _Fault.NONE
        with self._lock:
            drop_rate, error_rate = self.drop_rate, self.error_rate
        roll = self._random.random()
        if roll < drop_rate:
            return _Fault.DROP
        if roll < drop_rate + error_rate:
            return _Fault.ERROR
        return _Fault.NONE

    async def _serve_client(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        upstream: list[_Upstream] = []  # at most one; a list so _serve_one can replace it
        try:
            while await self._serve_one(client_reader, client_writer, upstream):
                pass
        except _CONNECTION_ERRORS:
            pass  # either side went away or spoke garbage: drop this connection only
        except asyncio.CancelledError:
            # stop() cancels; ending normally instead spares 3.11's start_server callback
            # an error log (it calls task.exception() on a cancelled task).
            pass
        finally:
            self._connections.discard(task)
            client_writer.close()
            for connection in upstream:
                connection.close()

    async def _serve_one(
        self,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        upstream: list[_Upstream],
    ) -> bool:
        """Handle one request on a client connection; True if the connection stays open."""
        request = await read_head(client_reader)
        if request is None:
            return False
        self.requests += 1
        method, _, rest = request.start_line.partition(" ")
        target = rest.rpartition(" ")[0]
        self.seen.append((method, target))
        framing, length = request_framing(request)
        if request.has_token("expect", "100-continue"):
            # Answer it here: the body must reach the proxy before a fault is decided, and
            # a client waiting for it (botocore waits 1 s) would make every PUT slow.
            client_writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        fault = self._choose_fault(method, target)
        if fault is not _Fault.NONE:
            await relay_body(client_reader, None, framing, length)  # read it all, keep none
        if fault is _Fault.DROP:
            self.drops += 1
            client_writer.transport.abort()
            return False
        if fault is _Fault.ERROR:
            self.errors += 1
            await self._answer_error(client_writer, method, request.keep_alive())
            return request.keep_alive()
        self.forwarded += 1
        with self._lock:
            delay_s = self.delay_s
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        connection = await self._connect(upstream)
        if connection is None:
            await relay_body(client_reader, None, framing, length)
            await self._answer_bad_gateway(client_writer)
            return False
        connection.writer.write(request.encode(without=NOT_FORWARDED))
        await relay_body(client_reader, connection.writer, framing, length)
        await connection.writer.drain()
        response = await read_head(connection.reader)
        while response is not None and 100 <= response.status < 200 and response.status != 101:
            response = await read_head(connection.reader)  # interim answers are not relayed
        if response is None:
            raise ConnectionResetError("upstream closed without answering")
        client_writer.write(response.encode())
        body_framing, body_length = response_framing(response, method)
        await relay_body(connection.reader, client_writer, body_framing, body_length)
        await client_writer.drain()
        if body_framing is Framing.UNTIL_CLOSE or not response.keep_alive():
            upstream.clear()
            connection.close()
            return False
        return request.keep_alive()

    async def _connect(self, upstream: list[_Upstream]) -> _Upstream | None:
        """The client connection's upstream connection: reused if still alive, else new."""
        if upstream and upstream[0].usable():
            return upstream[0]
        for stale in upstream:
            stale.close()
        upstream.clear()
        try:
            reader, writer = await asyncio.open_connection(*self._upstream_addr, limit=HEAD_LIMIT)
        except OSError:
            return None
        upstream.append(_Upstream(reader, writer))
        return upstream[0]

    async def _answer_error(
        self, writer: asyncio.StreamWriter, method: str, keep_alive: bool
    ) -> None:
        body = b"" if method == "HEAD" else ERROR_BODY
        head = (
            "HTTP/1.1 500 Internal Server Error\r\n"
            "Content-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"x-amz-request-id: faultproxy-{self.errors}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + body)
        await writer.drain()

    async def _answer_bad_gateway(self, writer: asyncio.StreamWriter) -> None:
        body = f"FaultProxy: cannot connect to {self.upstream}".encode()
        head = (
            "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + body)
        await writer.drain()
