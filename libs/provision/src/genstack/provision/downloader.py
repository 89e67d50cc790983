"""A parallel, multi-range, resumable, verifying downloader.

How a file is fetched:

- It is cut into pieces (16-128 MiB). Worker threads take pieces in file order, each with
  one ranged GET on a kept-alive connection; several files are in flight at once
  (``max_files`` with pieces still to hand out), so small files never wait behind a big one
  for long and no worker sits idle at the end of a file. Four workers start; every second
  four more are tried and kept only if they raised the throughput by a quarter, up to
  ``connections``: a CDN that caps each connection gets many, a LAN or loopback link (where
  more streams only cost CPU) stays with a few.
- Bytes go from the socket into a per-worker buffer and from there to
  ``<dest>.part`` with ``pwrite``. After every write the piece's byte count is written to
  ``<dest>.part.state`` (also with ``pwrite``: it lands in the page cache, so it survives a
  SIGKILL of the process). A rerun reads the state and asks only for the bytes it lacks; the
  state header names the source, size and expected hash, and a part that belongs to
  something else is discarded.
- A hasher thread per file follows the contiguous written prefix and feeds sha256 while the
  rest downloads, so verification costs almost nothing at the end.
- Only when the size and sha256 match (the manifest's, or the hub's) is the part renamed to
  its name. A mismatch deletes the part and fetches the file again, up to
  ``verify_attempts`` times, then fails naming the file. With no known hash the computed one
  is reported (and recorded in the ledger by the caller).
- Failed requests are retried with exponential backoff and jitter (per piece); a transfer
  that moves fewer than ``STALL_BYTES`` in ``stall_timeout_s`` is cut by a watchdog and
  retried; an expired redirect target (presigned URL) is re-resolved from the source URL.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import json
import logging
import os
import random
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from genstack.provision.errors import (
    ChecksumError,
    DownloadError,
    DownloadInterruptedError,
)
from genstack.provision.http import HostToken, HttpError, Response, Session, safe_url
from genstack.provision.ledger import fsync_dir
from genstack.provision.progress import NullProgress, Progress

__all__ = ["DownloadItem", "DownloadResult", "Downloader", "DownloaderConfig", "part_paths"]

log = logging.getLogger(__name__)

STATE_HEADER = 4096
STALL_BYTES = 256 * 1024
BUFFER = 4 * 2**20
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_REFRESH_STATUS = frozenset({401, 403, 404, 410})  # an expired presigned redirect target


@dataclass(frozen=True)
class DownloadItem:
    """One file to fetch to ``dest``. ``identity`` ties a part file to what is fetched (source
    and, when known, its hash): a part with another identity is not resumed."""

    key: str
    dest: Path
    url: str
    size: int | None
    sha256: str | None
    identity: str
    ranges: bool = True


@dataclass(frozen=True)
class DownloadResult:
    item: DownloadItem
    sha256: str
    size: int
    bytes_fetched: int
    attempts: int


@dataclass(frozen=True)
class DownloaderConfig:
    connections: int = 16
    # Connections start at ``initial_connections`` and grow by ``ramp_step`` each second
    # while that raises the throughput: a CDN that caps each connection gets all of them,
    # a LAN or loopback link (where more streams only cost CPU) stays with a few.
    initial_connections: int = 4
    ramp_step: int = 4
    max_files: int = 4
    piece_size: int | None = None  # None: by file size (16-128 MiB)
    retries: int = 8
    verify_attempts: int = 3
    retry_base_s: float = 0.5
    retry_cap_s: float = 30.0
    stall_timeout_s: float = 30.0
    connect_timeout_s: float = 15.0
    fsync: bool = False


def part_paths(dest: Path) -> tuple[Path, Path]:
    return dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.state")


@dataclass
class _Piece:
    index: int
    start: int
    end: int | None  # exclusive; None: to the end of a body of unknown length
    done: int = 0
    claimed: bool = False
    attempts: int = 0
    not_before: float = 0.0

    @property
    def length(self) -> int | None:
        return None if self.end is None else self.end - self.start

    @property
    def complete(self) -> bool:
        return self.end is not None and self.done >= self.end - self.start


@dataclass
class _FileFetch:
    item: DownloadItem
    part: Path
    state: Path
    pieces: list[_Piece] = field(default_factory=list)
    fd: int = -1
    state_fd: int = -1
    size: int | None = None
    ranges: bool = True
    final_url: str | None = None
    in_flight: int = 0
    attempt: int = 1
    fetched: int = 0
    failed: str | None = None
    finished: bool = False
    eof: bool = False  # unknown-length body fully read
    cond: threading.Condition = field(default_factory=threading.Condition)
    hasher_thread: threading.Thread | None = None

    @property
    def key(self) -> str:
        return self.item.key

    def unclaimed(self) -> bool:
        return any(not p.claimed and not p.complete for p in self.pieces)

    def all_complete(self) -> bool:
        if self.size is None:
            return self.eof
        return all(p.complete for p in self.pieces)

    def prefix(self) -> int:
        """Bytes from offset 0 that are written (the hasher may read up to here)."""
        total = 0
        for piece in self.pieces:
            total += piece.done
            if not piece.complete:
                break
        return total


class _RetryError(Exception):
    """This attempt at a piece failed in a way a later attempt may not."""

    def __init__(self, message: str, delay_s: float | None = None) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class _StoppedError(Exception):
    """The run is stopping, or this file failed elsewhere: leave the piece as it is."""


class _FatalError(Exception):
    """This file cannot be fetched (404, changed remotely, ...)."""


class _Transfer:
    """A response being read, for the stall watchdog."""

    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock
        self.mark_bytes = 0
        self.bytes = 0
        self.mark_time = time.monotonic()
        self.stalled = False


class Downloader:
    """Fetch many files at once; see the module docstring. Use one per run."""

    def __init__(
        self,
        config: DownloaderConfig | None = None,
        *,
        tokens: Sequence[HostToken] = (),
        progress: Progress | None = None,
        on_verified: Callable[[DownloadResult], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.config = config or DownloaderConfig()
        self.tokens = tuple(tokens)
        self.progress: Progress = progress or NullProgress()
        self.on_verified = on_verified
        self.stop = stop or threading.Event()
        self.bytes_fetched = 0
        self._cond = threading.Condition()
        self._pending: deque[_FileFetch] = deque()
        self._active: list[_FileFetch] = []
        self._results: list[DownloadResult] = []
        self._failures: list[tuple[str, str]] = []
        self._remaining = 0
        self._transfers: dict[int, _Transfer] = {}
        self._transfers_lock = threading.Lock()
        self._finished = threading.Event()
        self._limit = max(1, min(self.config.initial_connections, self.config.connections))
        self._ramp_at = time.monotonic()
        self._ramp_bytes = 0
        self._ramp_rate: float | None = None
        self._ramp_warm = False
        self._ramp_done = False

    # ------------------------------------------------------------------ public

    def download(self, items: Sequence[DownloadItem]) -> list[DownloadResult]:
        """Fetch and verify every item; return their results in order of completion.

        Raises DownloadError listing every file that failed (the others are kept and
        recorded), or DownloadInterruptedError when ``stop`` was set.
        """
        if not items:
            return []
        fetches = [_FileFetch(item, *part_paths(item.dest)) for item in items]
        with self._cond:
            self._pending.extend(fetches)
            self._remaining = len(fetches)
        self.progress.begin(
            sum(i.size or 0 for i in items),
            len(items),
            already=sum(self._resumable_bytes(j) for j in fetches),
        )
        workers = [
            threading.Thread(target=self._worker, args=(n,), name=f"dl-{n}", daemon=True)
            for n in range(max(1, self.config.connections))
        ]
        self._ramp_at = time.monotonic()
        watchdog = threading.Thread(target=self._watchdog, name="dl-watchdog", daemon=True)
        for thread in [*workers, watchdog]:
            thread.start()
        try:
            for thread in workers:
                while thread.is_alive():
                    thread.join(timeout=0.5)
            for fetch in fetches:
                if fetch.hasher_thread is not None:
                    while fetch.hasher_thread.is_alive():
                        fetch.hasher_thread.join(timeout=0.5)
        except KeyboardInterrupt:
            self.stop.set()
            raise
        finally:
            self._finished.set()
            with self._cond:
                self._cond.notify_all()
            for fetch in fetches:
                self._close_fetch(fetch)
        if self._failures:
            raise DownloadError(self._failures)
        if self._remaining:
            raise DownloadInterruptedError(
                f"stopped with {self._remaining} file(s) unfinished; their partial data is "
                "kept and resumes on the next run"
            )
        return list(self._results)

    # ------------------------------------------------------------------ scheduling

    def _next_work(self, worker: int) -> tuple[_FileFetch, _Piece] | None:
        with self._cond:
            while True:
                if self.stop.is_set() or self._remaining == 0:
                    return None
                if worker >= self._limit:
                    self._cond.wait(timeout=0.5)
                    continue
                now = time.monotonic()
                wake = now + 0.5
                for fetch in self._active:
                    if fetch.failed or fetch.finished:
                        continue
                    for piece in fetch.pieces:
                        if piece.claimed or piece.complete:
                            continue
                        if piece.not_before > now:
                            wake = min(wake, piece.not_before)
                            continue
                        piece.claimed = True
                        fetch.in_flight += 1
                        return fetch, piece
                waiting = sum(1 for j in self._active if j.unclaimed() and not j.failed)
                if self._pending and waiting < self.config.max_files:
                    fetch = self._pending.popleft()
                    try:
                        self._open_fetch(fetch)
                    except OSError as exc:
                        self._fail_locked(fetch, f"cannot write {fetch.part}: {exc}")
                        continue
                    self._active.append(fetch)
                    continue
                self._cond.wait(timeout=max(0.01, wake - now))

    def _release(self, fetch: _FileFetch, piece: _Piece, error: _RetryError | None) -> None:
        with self._cond:
            piece.claimed = False
            fetch.in_flight -= 1
            if error is not None and not fetch.failed:
                piece.attempts += 1
                if piece.attempts > self.config.retries:
                    self._fail_locked(
                        fetch,
                        f"gave up after {piece.attempts} attempts at bytes "
                        f"{piece.start + piece.done}-: {error}",
                    )
                else:
                    delay = error.delay_s
                    if delay is None:
                        backoff = self.config.retry_base_s * 2 ** (piece.attempts - 1)
                        delay = min(self.config.retry_cap_s, backoff) * random.uniform(0.5, 1.5)  # noqa: S311 - jitter
                    piece.not_before = time.monotonic() + delay
                    log.info(
                        "retrying %s in %.1fs (attempt %d/%d): %s",
                        fetch.key,
                        delay,
                        piece.attempts + 1,
                        self.config.retries + 1,
                        error,
                    )
            self._cond.notify_all()
        with fetch.cond:
            fetch.cond.notify_all()

    def _fail_locked(self, fetch: _FileFetch, reason: str) -> None:
        if fetch.failed or fetch.finished:
            return
        fetch.failed = reason
        self._failures.append((fetch.key, reason))
        self._remaining -= 1
        self.progress.file_failed(fetch.key, reason)
        with fetch.cond:
            fetch.cond.notify_all()
        self._cond.notify_all()

    # ------------------------------------------------------------------ files

    def _piece_size(self, size: int) -> int:
        if self.config.piece_size:
            return self.config.piece_size
        per = size // (max(1, self.config.connections) * 16)
        return min(128 * 2**20, max(16 * 2**20, per))

    def _header(self, fetch: _FileFetch, piece_size: int) -> bytes:
        header = json.dumps(
            {
                "v": 1,
                "identity": fetch.item.identity,
                "size": fetch.item.size,
                "piece_size": piece_size,
            },
            sort_keys=True,
        ).encode()
        if len(header) >= STATE_HEADER:
            raise OSError("state header too long")
        return header.ljust(STATE_HEADER - 1) + b"\n"

    def _resumable_bytes(self, fetch: _FileFetch) -> int:
        """Bytes a previous run left in fetch's part (0 if it cannot be resumed)."""
        item = fetch.item
        if item.size is None or not item.ranges:
            return 0
        try:
            with fetch.state.open("rb") as f:
                blob = f.read()
        except OSError:
            return 0
        piece_size = self._piece_size(item.size)
        try:
            expected = self._header(fetch, piece_size)
        except OSError:
            return 0
        if blob[:STATE_HEADER] != expected:
            return 0
        count = len(blob[STATE_HEADER:]) // 8
        done = struct.unpack(f"<{count}q", blob[STATE_HEADER : STATE_HEADER + 8 * count])
        return sum(max(0, d) for d in done)

    def _open_fetch(self, fetch: _FileFetch) -> None:
        item = fetch.item
        item.dest.parent.mkdir(parents=True, exist_ok=True)
        fetch.size = item.size
        fetch.ranges = item.ranges and item.size is not None
        piece_size = self._piece_size(item.size) if item.size else 0
        pieces: list[_Piece] = []
        if fetch.size is None or not fetch.ranges or fetch.size == 0:
            pieces = [_Piece(0, 0, fetch.size)]
        else:
            for index, start in enumerate(range(0, fetch.size, piece_size)):
                pieces.append(_Piece(index, start, min(start + piece_size, fetch.size)))
        header = self._header(fetch, piece_size)
        resumed = False
        if fetch.ranges and fetch.part.exists() and fetch.state.exists():
            with contextlib.suppress(OSError):
                blob = fetch.state.read_bytes()
                if (
                    blob[:STATE_HEADER] == header
                    and len(blob) == STATE_HEADER + 8 * len(pieces)
                    and fetch.part.stat().st_size == fetch.size
                ):
                    done = struct.unpack(f"<{len(pieces)}q", blob[STATE_HEADER:])
                    for piece, value in zip(pieces, done, strict=True):
                        length = piece.length or 0
                        piece.done = min(max(0, value), length)
                    resumed = True
        fetch.pieces = pieces
        if resumed:
            fetch.fd = os.open(fetch.part, os.O_RDWR)
            fetch.state_fd = os.open(fetch.state, os.O_RDWR)
        else:
            self._fresh_files(fetch, header)
        already = sum(p.done for p in pieces)
        self.progress.file_started(fetch.key, fetch.size, already)
        fetch.hasher_thread = threading.Thread(
            target=self._hash_and_finish, args=(fetch,), name=f"hash-{fetch.key}"[:60], daemon=True
        )
        fetch.hasher_thread.start()

    def _fresh_files(self, fetch: _FileFetch, header: bytes) -> None:
        for fd in (fetch.fd, fetch.state_fd):
            if fd >= 0:
                os.close(fd)
        fetch.fd = os.open(fetch.part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        if fetch.size:
            _allocate(fetch.fd, fetch.size)
        fetch.state_fd = os.open(fetch.state, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.pwrite(fetch.state_fd, header + bytes(8 * len(fetch.pieces)), 0)
        for piece in fetch.pieces:
            piece.done = 0

    def _close_fetch(self, fetch: _FileFetch) -> None:
        for name in ("fd", "state_fd"):
            fd = getattr(fetch, name)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(fetch, name, -1)

    # ------------------------------------------------------------------ workers

    def _worker(self, index: int) -> None:
        buffer = memoryview(bytearray(BUFFER))
        session = Session(
            self.tokens,
            connect_timeout=self.config.connect_timeout_s,
            read_timeout=self.config.stall_timeout_s,
        )
        try:
            while True:
                work = self._next_work(index)
                if work is None:
                    return
                fetch, piece = work
                error: _RetryError | None = None
                try:
                    self._fetch_piece(session, fetch, piece, buffer)
                except _RetryError as exc:
                    error = exc
                except _StoppedError:
                    pass
                except HttpError as exc:
                    error = _RetryError(str(exc))
                except _FatalError as exc:
                    with self._cond:
                        self._fail_locked(fetch, str(exc))
                except OSError as exc:
                    with self._cond:
                        self._fail_locked(fetch, f"cannot write {fetch.part}: {exc}")
                self._release(fetch, piece, error)
        finally:
            session.close()

    def _fetch_piece(
        self, session: Session, fetch: _FileFetch, piece: _Piece, buffer: memoryview
    ) -> None:
        start = piece.start + piece.done
        headers: dict[str, str] = {}
        if fetch.ranges:
            assert piece.end is not None
            if start >= piece.end:
                return
            headers["Range"] = f"bytes={start}-{piece.end - 1}"
        elif piece.done:
            # No ranges: the body starts over, and so does the file.
            self.progress.file_rewound(fetch.key, piece.done)
            piece.done = 0
        url = fetch.final_url or fetch.item.url
        response = session.request("GET", url, headers)
        complete = False
        try:
            status = response.status
            if status in _REFRESH_STATUS and fetch.final_url is not None:
                fetch.final_url = None
                raise _RetryError(f"HTTP {status} from the redirect target; resolving it again", 0)
            if status in _RETRYABLE_STATUS:
                raise _RetryError(
                    f"HTTP {status}", _retry_after(response.headers.get("Retry-After"))
                )
            if status == 206:
                self._check_range(fetch, response.headers.get("Content-Range", ""), start, piece)
            elif status == 200:
                if fetch.ranges and not (start == 0 and piece.end == fetch.size):
                    raise _RetryError("server ignored the Range header (answered 200)")
            else:
                raise _FatalError(f"HTTP {status} from {safe_url(response.url)}")
            if response.hops and fetch.final_url is None:
                fetch.final_url = response.url
            self._stream(fetch, piece, response, buffer)
            complete = True
        finally:
            response.close(reuse=complete)

    def _check_range(self, fetch: _FileFetch, value: str, start: int, piece: _Piece) -> None:
        match = _CONTENT_RANGE.match(value.strip())
        if not match:
            raise _RetryError(f"bad Content-Range {value!r}")
        first, _last, total = match.groups()
        if total != "*" and fetch.size is not None and int(total) != fetch.size:
            raise _FatalError(
                f"the remote file changed size during the download ({fetch.size} -> {total}); "
                "run again to start it over"
            )
        if int(first) != start:
            raise _RetryError(f"asked for bytes from {start}, got {value!r}")

    def _stream(
        self, fetch: _FileFetch, piece: _Piece, response: Response, buffer: memoryview
    ) -> None:
        transfer = _Transfer(response.socket)
        ident = threading.get_ident()
        with self._transfers_lock:
            self._transfers[ident] = transfer
        slot = STATE_HEADER + 8 * piece.index
        position = piece.start + piece.done
        notify_every = 8 * 2**20
        since_notify = 0
        try:
            while True:
                if self.stop.is_set() or fetch.failed:
                    raise _StoppedError
                want = buffer
                if piece.end is not None:
                    left = piece.end - position
                    if left <= 0:
                        break
                    if left < len(buffer):
                        want = buffer[:left]
                try:
                    n = response.readinto(want)
                except (OSError, ValueError) as exc:
                    if transfer.stalled or isinstance(exc, TimeoutError):
                        raise _RetryError(
                            f"stalled: under {STALL_BYTES // 1024} KiB in "
                            f"{self.config.stall_timeout_s:g}s"
                        ) from None
                    raise _RetryError(f"connection broke: {type(exc).__name__}: {exc}") from None
                if n == 0:
                    if piece.end is None:
                        # A body of unknown length ended: now the piece (the file) has a size.
                        piece.end = position
                        fetch.size = position
                        fetch.eof = True
                        break
                    raise _RetryError(f"connection closed at byte {position}")
                written = 0
                while written < n:
                    written += os.pwrite(fetch.fd, want[written:n], position + written)
                position += n
                piece.done += n
                # After the data: a kill between the two loses this chunk, never more.
                os.pwrite(fetch.state_fd, struct.pack("<q", piece.done), slot)
                transfer.bytes += n
                fetch.fetched += n
                self.bytes_fetched += n
                self.progress.advance(fetch.key, n)
                since_notify += n
                if since_notify >= notify_every:
                    since_notify = 0
                    with fetch.cond:
                        fetch.cond.notify_all()
        finally:
            with self._transfers_lock:
                self._transfers.pop(ident, None)

    def _ramp(self, now: float) -> None:
        """Probe more connections each second; keep a step only if it raised the throughput
        by a quarter, else go back to the previous count and stay there. The first second
        (connecting, first bytes) only sets the marks."""
        if self._ramp_done:
            return
        elapsed = now - self._ramp_at
        if elapsed < 1.0:
            return
        rate = (self.bytes_fetched - self._ramp_bytes) / elapsed
        self._ramp_at, self._ramp_bytes = now, self.bytes_fetched
        if rate <= 0 or not self._ramp_warm:
            self._ramp_warm = rate > 0  # nothing moved yet, or the warm-up second: judge later
            return
        with self._cond:
            if self._ramp_rate is not None and rate < self._ramp_rate * 1.25:
                self._limit = max(1, self._limit - self.config.ramp_step)  # the step did not pay
                self._ramp_done = True
                log.debug("staying at %d connections (%.0f MB/s)", self._limit, rate / 1e6)
                return
            if self._limit >= self.config.connections:
                self._ramp_done = True
                return
            self._ramp_rate = rate
            self._limit = min(self.config.connections, self._limit + self.config.ramp_step)
            self._cond.notify_all()

    def _watchdog(self) -> None:
        interval = min(0.25, self.config.stall_timeout_s / 4)
        while not self._finished.wait(interval):
            now = time.monotonic()
            self._ramp(now)
            with self._transfers_lock:
                transfers = list(self._transfers.values())
            for transfer in transfers:
                if transfer.bytes - transfer.mark_bytes >= STALL_BYTES:
                    transfer.mark_bytes, transfer.mark_time = transfer.bytes, now
                elif now - transfer.mark_time > self.config.stall_timeout_s and transfer.sock:
                    transfer.stalled = True
                    with contextlib.suppress(OSError):
                        transfer.sock.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ verification

    def _hash_and_finish(self, fetch: _FileFetch) -> None:
        try:
            self._hash_loop(fetch)
        except Exception as exc:
            log.exception("verifying %s failed", fetch.key)
            with self._cond:
                self._fail_locked(fetch, f"verification failed: {exc}")

    def _hash_loop(self, fetch: _FileFetch) -> None:
        buffer = bytearray(8 * 2**20)
        view = memoryview(buffer)
        while True:
            hasher = hashlib.sha256()
            position = 0
            while True:
                with fetch.cond:
                    while True:
                        if fetch.failed or self.stop.is_set():
                            return
                        target = fetch.prefix()
                        settled = fetch.all_complete() and fetch.in_flight == 0
                        if target > position or settled:
                            break
                        fetch.cond.wait(timeout=0.2)
                while position < target:
                    n = os.preadv(fetch.fd, [view[: min(len(buffer), target - position)]], position)
                    if n <= 0:
                        raise OSError(f"short read of {fetch.part} at {position}")
                    hasher.update(view[:n])
                    position += n
                with self._cond:
                    complete = fetch.all_complete() and fetch.in_flight == 0
                if complete and position >= fetch.prefix():
                    break
            digest = hasher.hexdigest()
            expected = fetch.item.sha256
            size_ok = fetch.item.size is None or position == fetch.item.size
            if (expected is None or digest == expected) and size_ok:
                self._finish(fetch, digest, position)
                return
            got = digest if size_ok else f"{position} bytes (expected {fetch.item.size})"
            want = expected if size_ok else str(fetch.item.size)
            if fetch.attempt >= self.config.verify_attempts:
                error = ChecksumError(fetch.key, want or "?", got, fetch.attempt)
                with self._cond:
                    self._fail_locked(fetch, error.reason)
                with contextlib.suppress(OSError):
                    fetch.part.unlink()
                    fetch.state.unlink()
                return
            log.warning(
                "%s: sha256 mismatch (expected %s, got %s); fetching it again (%d/%d)",
                fetch.key,
                expected,
                digest,
                fetch.attempt + 1,
                self.config.verify_attempts,
            )
            self.progress.file_state(fetch.key, "sha256 mismatch, fetching again")
            self.progress.file_rewound(fetch.key, position)
            with self._cond:
                fetch.attempt += 1
                fetch.final_url = None
                fetch.eof = False
                self._fresh_files(fetch, self._header(fetch, self._piece_size(fetch.size or 0)))
                for piece in fetch.pieces:
                    piece.attempts = 0
                    piece.not_before = 0.0
                self._cond.notify_all()

    def _finish(self, fetch: _FileFetch, digest: str, size: int) -> None:
        self.progress.file_state(fetch.key, "verified, saving")
        if self.config.fsync:
            os.fsync(fetch.fd)
        self._close_fetch(fetch)
        os.replace(fetch.part, fetch.item.dest)
        with contextlib.suppress(OSError):
            fetch.state.unlink()
        fsync_dir(fetch.item.dest.parent)
        result = DownloadResult(fetch.item, digest, size, fetch.fetched, fetch.attempt)
        if self.on_verified is not None:
            self.on_verified(result)
        with self._cond:
            fetch.finished = True
            self._results.append(result)
            self._remaining -= 1
            self._cond.notify_all()
        self.progress.file_done(fetch.key)


def _allocate(fd: int, size: int) -> None:
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


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return min(float(value.strip()), 120.0)
    return None
