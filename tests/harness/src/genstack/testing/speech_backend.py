"""A small real HTTP model server speaking OpenAI's speech contract, for tests and benchmarks
of anything that sits in front of one (the gateway) while the real TTS servers need GPUs.

- ``POST /v1/audio/speech``: a WAV in ``chunks`` pieces sent ``chunk_delay_s`` apart with
  chunked transfer encoding (or one piece with Content-Length when ``chunks`` is 1); an
  ``input`` of ``error:<status>`` answers that status with an OpenAI-shaped error body.
- ``GET /v1/audio/voices``: ``{"voices": [{"id": ...}, ...]}``.
- ``GET /healthz``.

It runs on its own event loop in a thread; ``requests`` records what it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from genstack.testing.http_relay import Framing, read_head, relay_body, request_framing
from genstack.testing.ports import free_port

__all__ = ["SpeechBackend", "SpeechRequest"]


@dataclass
class SpeechRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)


def _wav_header(data_bytes: int, rate: int = 24000) -> bytes:
    import struct

    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        rate,
        rate * 2,
        2,
        16,
        b"data",
        data_bytes,
    )


class SpeechBackend:
    def __init__(
        self,
        *,
        voices: list[str] | None = None,
        chunks: int = 4,
        chunk_bytes: int = 4800,
        chunk_delay_s: float = 0.0,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        self.voices = voices if voices is not None else ["alice", "bob"]
        self.chunks = chunks
        self.chunk_bytes = chunk_bytes
        self.chunk_delay_s = chunk_delay_s
        self.host = host
        self.port = port or free_port(host)
        self.requests: list[SpeechRequest] = []
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                # Open keep-alive connections would hold wait_closed() forever.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._server.wait_closed(), 1.0)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

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

    # serving ------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await read_head(reader)
                if head is None:
                    return
                method, target, _ = head.start_line.split(" ", 2)
                framing, length = request_framing(head)
                body = bytearray()
                if framing is Framing.LENGTH:
                    body = bytearray(await reader.readexactly(length))
                elif framing is Framing.CHUNKED:
                    await relay_body(reader, None, framing)  # not used by clients here
                headers = {k.lower(): v for k, v in head.headers}
                await self._answer(writer, method, target, headers, bytes(body))
                if not head.keep_alive():
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.close()

    async def _answer(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        path = target.split("?", 1)[0]
        if method == "GET" and path == "/healthz":
            await self._json(writer, 200, {"status": "ok"})
        elif method == "GET" and path == "/v1/audio/voices":
            await self._json(writer, 200, {"voices": [{"id": v, "name": v} for v in self.voices]})
        elif method == "POST" and path == "/v1/audio/speech":
            try:
                request = json.loads(body or b"{}")
            except json.JSONDecodeError:
                request = {}
            self.requests.append(SpeechRequest(path, headers, request))
            text = str(request.get("input", ""))
            if text.startswith("error:"):
                status = int(text.split(":", 1)[1] or 500)
                error = {
                    "message": f"backend refused: {text}",
                    "type": "invalid_request_error",
                    "param": "input",
                    "code": "backend_says_no",
                }
                await self._json(writer, status, {"error": error})
            else:
                await self._speech(writer)
        else:
            await self._json(writer, 404, {"error": {"message": "not found", "type": "x"}})

    async def _json(self, writer: asyncio.StreamWriter, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        await writer.drain()

    async def _speech(self, writer: asyncio.StreamWriter) -> None:
        pieces = [bytes([i % 251]) * self.chunk_bytes for i in range(self.chunks)]
        pieces[0] = _wav_header(self.chunk_bytes * self.chunks) + pieces[0]
        if self.chunks == 1:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\n"
                + f"Content-Length: {len(pieces[0])}\r\n\r\n".encode()
                + pieces[0]
            )
            await writer.drain()
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for index, piece in enumerate(pieces):
            if index and self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
