"""Just enough HTTP/1.1 message framing to relay messages between two asyncio streams.

Bodies are copied piece by piece with back-pressure (``drain``), never held whole, so a
proxy built on this streams objects of hundreds of MB in constant memory.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

__all__ = [
    "Framing",
    "MessageHead",
    "read_head",
    "relay_body",
    "request_framing",
    "response_framing",
]

PIECE = 256 * 1024


class ProtocolError(ValueError):
    """The peer sent something that is not HTTP/1.1 as this relay understands it."""


@dataclass(frozen=True)
class MessageHead:
    """A request or status line and its header fields, in wire order."""

    start_line: str
    headers: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def has_token(self, name: str, token: str) -> bool:
        """True if the comma-separated header ``name`` lists ``token`` (case-insensitive)."""
        name, token = name.lower(), token.lower()
        return any(
            part.strip().lower() == token
            for key, value in self.headers
            if key.lower() == name
            for part in value.split(",")
        )

    def encode(self, without: frozenset[str] = frozenset()) -> bytes:
        """The head as bytes, leaving out the header fields named in ``without`` (lower case)."""
        lines = [self.start_line]
        lines += [f"{key}: {value}" for key, value in self.headers if key.lower() not in without]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    @property
    def version(self) -> str:
        """'HTTP/1.1' etc.: the last word of a request line, the first of a status line."""
        words = self.start_line.split(" ")
        return words[0] if self.start_line.startswith("HTTP/") else words[-1]

    @property
    def status(self) -> int:
        """The status code of a response head."""
        try:
            return int(self.start_line.split(" ", 2)[1])
        except (IndexError, ValueError):
            raise ProtocolError(f"bad status line {self.start_line!r}") from None

    def keep_alive(self) -> bool:
        """Whether the sender lets the connection carry another message after this one."""
        if self.has_token("connection", "close"):
            return False
        return self.version != "HTTP/1.0" or self.has_token("connection", "keep-alive")


async def read_head(reader: asyncio.StreamReader) -> MessageHead | None:
    """Read one message head; None if the peer closed cleanly before sending anything.

    Heads bigger than the reader's limit raise LimitOverrunError (the caller drops the peer).
    """
    while True:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise ProtocolError("connection closed inside a message head") from exc
            return None
        # RFC 9112 2.2: ignore empty lines before a request line.
        text = raw.decode("latin-1").lstrip("\r\n")
        if text:
            break
    lines = text.split("\r\n")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep or not key or key != key.strip():
            raise ProtocolError(f"bad header line {line!r}")
        headers.append((key, value.strip()))
    return MessageHead(lines[0], headers)


class Framing(enum.Enum):
    """How the end of a message body is found."""

    NONE = "none"
    LENGTH = "length"
    CHUNKED = "chunked"
    UNTIL_CLOSE = "until-close"


def _length(head: MessageHead) -> int:
    value = head.get("content-length") or "0"
    # Repeated identical values (a list) are legal; anything else is not.
    values = {part.strip() for part in value.split(",")}
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise ProtocolError(f"bad Content-Length {value!r}")
    return int(values.pop())


def request_framing(head: MessageHead) -> tuple[Framing, int]:
    """Framing of a request body: chunked, Content-Length, or none (RFC 9112 6.3)."""
    if head.get("transfer-encoding") is not None:
        if not head.has_token("transfer-encoding", "chunked"):
            raise ProtocolError("request Transfer-Encoding without chunked")
        return Framing.CHUNKED, 0
    if head.get("content-length") is not None:
        return Framing.LENGTH, _length(head)
    return Framing.NONE, 0


def response_framing(head: MessageHead, request_method: str) -> tuple[Framing, int]:
    """Framing of a response body; HEAD answers and 1xx/204/304 never have one."""
    status = head.status
    if request_method == "HEAD" or 100 <= status < 200 or status in (204, 304):
        return Framing.NONE, 0
    if head.has_token("transfer-encoding", "chunked"):
        return Framing.CHUNKED, 0
    if head.get("content-length") is not None:
        return Framing.LENGTH, _length(head)
    return Framing.UNTIL_CLOSE, 0


async def relay_body(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter | None,
    framing: Framing,
    length: int = 0,
) -> None:
    """Copy one body from ``reader`` to ``writer`` as it arrives (discard it if writer is None).

    Chunked bodies are copied verbatim, chunk headers and trailers included.
    Raises IncompleteReadError if the sender closes early.
    """
    if framing is Framing.LENGTH:
        await _copy_exactly(reader, writer, length)
    elif framing is Framing.CHUNKED:
        await _copy_chunked(reader, writer)
    elif framing is Framing.UNTIL_CLOSE:
        while piece := await reader.read(PIECE):
            await _write(writer, piece)


async def _write(writer: asyncio.StreamWriter | None, data: bytes) -> None:
    if writer is not None:
        writer.write(data)
        await writer.drain()  # back-pressure: never queue more than the socket takes


async def _copy_exactly(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None, length: int
) -> None:
    remaining = length
    while remaining > 0:
        piece = await reader.read(min(PIECE, remaining))
        if not piece:
            raise asyncio.IncompleteReadError(b"", remaining)
        remaining -= len(piece)
        await _write(writer, piece)


async def _copy_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> None:
    while True:
        size_line = await reader.readuntil(b"\r\n")
        await _write(writer, size_line)
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size line {size_line!r}") from None
        if size == 0:
            break
        await _copy_exactly(reader, writer, size + 2)  # the chunk and its CRLF
    while True:  # trailer fields, then the empty line that ends the message
        line = await reader.readuntil(b"\r\n")
        await _write(writer, line)
        if line == b"\r\n":
            return
