"""A file being downloaded: ``<dest>.part`` (the bytes) and ``<dest>.part.state`` (progress).

The part file has the final size from the start (``fallocate``), and bytes are written where
they belong with ``pwrite``, so several connections fill it at once. The file is divided into
blocks of ``block_size`` bytes; the state file is a 4 KiB JSON header (format version,
identity, size, block size) followed by one little-endian int64 per block: how many bytes
from the block's start are written. It is updated with ``pwrite`` after every write (the page
cache keeps it through a SIGKILL of the process), so a rerun asks only for what is missing. A
state whose identity or size differ from what is fetched now (another version of the file)
is not resumed; a state written with another block size is, in its own blocks.

The state file is parsed here and nowhere else (:func:`part_bytes` is what the planner asks).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import json
import mmap
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

__all__ = [
    "STATE_HEADER",
    "PartFile",
    "allocate",
    "block_size_for",
    "part_bytes",
    "part_paths",
]

STATE_HEADER = 4096
MiB = 2**20
# Blocks are the unit of resume and of splitting work between connections: small enough that
# the tail of a file spreads over every connection, few enough that the state stays small
# (at most ~2048 blocks until blocks reach their largest size).
MIN_BLOCK = 1 * MiB
MAX_BLOCK = 16 * MiB
_SLOT = struct.Struct("<q")


def part_paths(dest: Path) -> tuple[Path, Path]:
    return dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.state")


def block_size_for(size: int, max_request: int | None = None) -> int:
    """The block size of a new part file of ``size`` bytes (whole MiB, 1-16 MiB, at most
    ``max_request``)."""
    block = min(MAX_BLOCK, max(MIN_BLOCK, (size // 2048) // MiB * MiB))
    if max_request:
        block = max(1, min(block, max_request))
    return block


def part_bytes(dest: Path) -> int:
    """Bytes a previous run wrote into dest's part file, per its state file (0 if none)."""
    _, state = part_paths(dest)
    try:
        blob = state.read_bytes()
    except OSError:
        return 0
    return sum(_counters(blob))


def _counters(blob: bytes) -> list[int]:
    count = (len(blob) - STATE_HEADER) // 8
    if count <= 0:
        return []
    values = struct.unpack(f"<{count}q", blob[STATE_HEADER : STATE_HEADER + 8 * count])
    return [max(0, v) for v in values]


def _header(identity: str, size: int | None, block_size: int) -> bytes:
    text = json.dumps(
        {"v": 1, "identity": identity, "size": size, "piece_size": block_size}, sort_keys=True
    ).encode()
    if len(text) >= STATE_HEADER:
        raise OSError("state header too long")
    return text.ljust(STATE_HEADER - 1) + b"\n"


def _block_count(size: int | None, block_size: int) -> int:
    if not size:
        return 1
    return -(-size // block_size)


@dataclass(frozen=True)
class Resumable:
    block_size: int
    done: list[int]  # bytes written from each block's start

    @property
    def total(self) -> int:
        return sum(self.done)


class PartFile:
    """The part and state files of one download. Not thread-safe to open or reset; ``write``,
    ``record`` and reading through ``view`` are safe from many threads (each writes its own
    blocks)."""

    def __init__(self, dest: Path, identity: str, size: int | None) -> None:
        self.dest = dest
        self.path, self.state_path = part_paths(dest)
        self.identity = identity
        self.size = size
        self.block_size = size or 1
        self.fd = -1
        self._state_fd = -1
        self._map: mmap.mmap | None = None

    # ------------------------------------------------------------------ opening

    def resumable(self) -> Resumable | None:
        """What a previous run left that can be resumed (None: nothing, or another file's)."""
        if not self.size:
            return None
        try:
            with self.state_path.open("rb") as f:
                blob = f.read()
            if self.path.stat().st_size != self.size:
                return None
            header = json.loads(blob[:STATE_HEADER])
        except (OSError, ValueError):
            return None
        if not isinstance(header, dict):
            return None
        block_size = header.get("piece_size")
        if (
            header.get("v") != 1
            or header.get("identity") != self.identity
            or header.get("size") != self.size
            or not isinstance(block_size, int)
            or block_size <= 0
            or len(blob) != STATE_HEADER + 8 * _block_count(self.size, block_size)
        ):
            return None
        done = _counters(blob)
        for k, value in enumerate(done):
            done[k] = min(value, self.block_length(k, block_size))
        return Resumable(block_size, done)

    def open(self, block_size: int, resumed: Resumable | None) -> list[int]:
        """Open (resuming ``resumed``) or create the files; the bytes done per block."""
        self.close()
        if resumed is not None:
            self.block_size = resumed.block_size
            self.fd = os.open(self.path, os.O_RDWR)
            self._state_fd = os.open(self.state_path, os.O_RDWR)
            return list(resumed.done)
        self.block_size = block_size if self.size else 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        if self.size:
            allocate(self.fd, self.size)
        self._state_fd = os.open(self.state_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        count = self.block_count
        os.pwrite(self._state_fd, _header(self.identity, self.size, self.block_size), 0)
        os.pwrite(self._state_fd, bytes(8 * count), STATE_HEADER)
        return [0] * count

    @property
    def block_count(self) -> int:
        return _block_count(self.size, self.block_size)

    def block_start(self, k: int) -> int:
        return k * self.block_size

    def block_length(self, k: int, block_size: int | None = None) -> int:
        """Bytes in block ``k`` (the last is short); -1 for a body of unknown length."""
        if self.size is None:
            return -1
        b = block_size or self.block_size
        return max(0, min(b, self.size - k * b))

    # ------------------------------------------------------------------ writing

    def write(self, data: memoryview, position: int) -> None:
        written = 0
        while written < len(data):
            written += os.pwrite(self.fd, data[written:], position + written)

    def record(self, k: int, done: int) -> None:
        """Block ``k`` has ``done`` bytes from its start (after the data: a kill between the
        two loses that chunk, never more)."""
        os.pwrite(self._state_fd, _SLOT.pack(done), STATE_HEADER + 8 * k)

    # ------------------------------------------------------------------ reading back

    def digest(self, hasher: hashlib._Hash, start: int, stop: int) -> None:
        """Feed bytes ``[start, stop)`` of the part to ``hasher``: from the file mapped
        read-only (the page cache itself, no copy), else read in chunks."""
        if self._map is None and self.size and self.fd >= 0:
            with contextlib.suppress(OSError, ValueError):
                self._map = mmap.mmap(self.fd, self.size, prot=mmap.PROT_READ)
        if self._map is not None:
            with memoryview(self._map) as whole, whole[start:stop] as piece:
                hasher.update(piece)
            return
        buffer = memoryview(bytearray(min(stop - start, 8 * MiB)))
        while start < stop:
            n = os.preadv(self.fd, [buffer[: min(len(buffer), stop - start)]], start)
            if n <= 0:
                raise OSError(f"short read of {self.path} at {start}")
            hasher.update(buffer[:n])
            start += n

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        if self._map is not None:
            with contextlib.suppress(BufferError):  # a view still held: the GC closes it
                self._map.close()
            self._map = None
        for name in ("fd", "_state_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)

    def discard(self) -> None:
        self.close()
        for path in (self.path, self.state_path):
            with contextlib.suppress(OSError):
                path.unlink()

    def complete(self, *, fsync: bool) -> None:
        """Rename the verified part to its name and drop the state."""
        if fsync:
            os.fsync(self.fd)
        self.close()
        os.replace(self.path, self.dest)
        with contextlib.suppress(OSError):
            self.state_path.unlink()


def allocate(fd: int, size: int) -> None:
    """Reserve the file's blocks up front (fallocate): a disk that fills fails now, not at
    90 %, and writes into reserved extents cost less. Where the filesystem cannot, the file
    is extended sparse instead (never glibc's emulation, which writes every block)."""
    fallocate = _libc_fallocate()
    if fallocate is not None:
        if fallocate(fd, 0, 0, size) == 0:
            return
        error = ctypes.get_errno()
        if error not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise OSError(error, os.strerror(error))
    os.ftruncate(fd, size)


@functools.cache
def _libc_fallocate() -> Callable[[int, int, int, int], int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).fallocate
    except (AttributeError, OSError):
        return None  # not Linux
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    function.restype = ctypes.c_int
    return cast(Callable[[int, int, int, int], int], function)
