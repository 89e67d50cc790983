"""A parallel, multi-range, resumable, verifying downloader.

How a file is fetched:

- Its part file (:mod:`genstack.provision.partfile`) is divided into blocks of 1-16 MiB.
  A worker thread per connection (``connections`` in all) claims a *run* of blocks and
  fetches it with one ranged GET on a kept-alive connection. A run starts at the first block
  nobody holds and is the file's fair share: half of what is left divided by the server's
  connection limit (at most ``piece_size``, at least a block). So the first requests are long
  and later ones shorter: the data arrives roughly in file order (the hash keeps up), and the
  last requests of a file are small, so every connection is busy until its end. When nothing
  is left to claim, an idle worker takes the second half of the longest run in flight
  (aria2c's split), which the other worker then stops short of.
- Every server (origin) starts with all ``connections``: the limit is lowered only when the
  server pushes back (429, 503, ``Retry-After``, refused or reset connections) or when more
  connections moved fewer bytes, and it is raised again later
  (:mod:`genstack.provision.connections`). Runs over a lowered limit stop at their next read.
- Several files are in flight at once (``max_files`` with blocks still to hand out, in
  order) and share the workers: a connection is held per run, never per file, so a small
  file takes one short request and the rest of the budget stays with the big one.
- Bytes go from the socket into a per-worker buffer and from there to ``<dest>.part`` with
  ``pwrite``; the block's byte count then goes to the state file, so a SIGKILL loses at most
  the chunk in flight per connection and a rerun asks only for the missing bytes.
- sha256 follows the written prefix of the file: the worker whose bytes extend it hashes them
  straight from its buffer; bytes written ahead of it by other workers are hashed, when the
  prefix reaches them, from the part file mapped read-only (the page cache, no copy) by the
  file's verifier thread. hashlib releases the GIL for buffers this large, so hashing runs
  beside the transfers and the digest is ready moments after the last byte.
- Only when the size and sha256 match (the manifest's, or the hub's) is the part renamed to
  its name. A mismatch deletes the part and fetches the file again, up to
  ``verify_attempts`` times, then fails naming the file. With no known hash the computed one
  is reported (and recorded in the ledger by the caller).
- Failed requests are retried with exponential backoff and jitter (per block); a transfer
  that moves fewer than ``STALL_BYTES`` in ``stall_timeout_s`` is cut by a watchdog and
  retried; an expired redirect target (presigned URL) is re-resolved from the source URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from genstack.provision.connections import BudgetConfig, ConnectionBudget
from genstack.provision.errors import (
    ChecksumError,
    DownloadError,
    DownloadInterruptedError,
)
from genstack.provision.http import (
    HostToken,
    HttpError,
    Response,
    Session,
    origin_of,
    safe_url,
    shared_ssl_context,
)
from genstack.provision.ledger import fsync_dir
from genstack.provision.partfile import (
    STATE_HEADER,
    PartFile,
    block_size_for,
    part_paths,
)
from genstack.provision.progress import NullProgress, Progress

__all__ = [
    "STATE_HEADER",
    "DownloadItem",
    "DownloadResult",
    "Downloader",
    "DownloaderConfig",
    "part_paths",
]

log = logging.getLogger(__name__)

Origin = tuple[str, str, int]

STALL_BYTES = 256 * 1024
BUFFER = 4 * 2**20  # per worker: one read at most; hashing large buffers releases the GIL
HASH_CHUNK = 16 * 2**20
NOTIFY_BYTES = 4 * 2**20
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_PUSHBACK_STATUS = frozenset({429, 503})
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
    connections: int = 16  # in all, and what each server starts with
    max_files: int = 4
    piece_size: int | None = None  # the most bytes one request asks for; None: no cap
    retries: int = 8
    verify_attempts: int = 3
    retry_base_s: float = 0.5
    retry_cap_s: float = 30.0
    stall_timeout_s: float = 30.0
    connect_timeout_s: float = 15.0
    fsync: bool = False
    backoff: float = 0.5
    backoff_hold_s: float = 5.0
    probe_step: int = 2
    probe_fall: float = 0.2

    def budget(self) -> BudgetConfig:
        return BudgetConfig(
            connections=self.connections,
            backoff=self.backoff,
            hold_s=self.backoff_hold_s,
            probe_step=self.probe_step,
            fall=self.probe_fall,
        )


@dataclass(eq=False)
class _Run:
    """Blocks ``[first, end)`` of a file held by one worker, fetched with one request. A
    thief may lower ``end``; the worker stops there."""

    fetch: _FileFetch
    first: int
    end: int
    position: int  # the next byte this run writes
    origin: Origin
    preempted: bool = False


@dataclass(eq=False)
class _FileFetch:
    item: DownloadItem
    part: PartFile
    size: int | None = None
    ranges: bool = True
    done: list[int] = field(default_factory=list)  # bytes written from each block's start
    owner: list[_Run | None] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    not_before: list[float] = field(default_factory=list)
    front: int = 0  # blocks before it are complete
    final_url: str | None = None
    in_flight: int = 0
    attempt: int = 1
    fetched: int = 0
    failed: str | None = None
    finished: bool = False
    eof: bool = False  # unknown-length body fully read
    cond: threading.Condition = field(default_factory=threading.Condition)
    hash_lock: threading.Lock = field(default_factory=threading.Lock)
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    hashed: int = 0  # bytes from offset 0 fed to ``hasher``
    verifier: threading.Thread | None = None

    @property
    def key(self) -> str:
        return self.item.key

    @property
    def origin(self) -> Origin:
        return origin_of(self.final_url or self.item.url)

    def reset_blocks(self, done: list[int]) -> None:
        n = len(done)
        self.done = done
        self.owner = [None] * n
        self.attempts = [0] * n
        self.not_before = [0.0] * n
        self.front = 0

    def block_complete(self, k: int) -> bool:
        length = self.part.block_length(k)
        return self.eof if length < 0 else self.done[k] >= length

    def all_complete(self) -> bool:
        return all(self.block_complete(k) for k in range(self.front, len(self.done)))

    def unclaimed(self) -> bool:
        return any(
            self.owner[k] is None and not self.block_complete(k)
            for k in range(self.front, len(self.done))
        )

    def remaining(self) -> int:
        if self.size is None:
            return 0
        return self.size - sum(self.done)

    def run_end(self, run: _Run) -> int | None:
        """The byte after the run's last block (None: a body of unknown length)."""
        if self.size is None:
            return None
        return min(self.size, run.end * self.part.block_size)

    def prefix(self) -> int:
        """Bytes from offset 0 that are written (the hash may read up to here)."""
        done, n = self.done, len(self.done)
        while self.front < n and self.block_complete(self.front):
            self.front += 1
        if self.front >= n:
            return self.size if self.size is not None else self.done[0]
        return self.part.block_start(self.front) + done[self.front]


class _RetryError(Exception):
    """This attempt at a run failed in a way a later attempt may not."""

    def __init__(
        self,
        message: str,
        delay_s: float | None = None,
        *,
        pushback: bool = False,
        origin: Origin | None = None,
    ) -> None:
        super().__init__(message)
        self.delay_s = delay_s
        self.pushback = pushback  # the server refused, reset or rate-limited us
        self.origin = origin


class _StoppedError(Exception):
    """The run is stopping, or this file failed elsewhere: leave the blocks as they are."""


class _FatalError(Exception):
    """This file cannot be fetched (404, changed remotely, ...)."""


class _Transfer:
    """A response being read, for the stall watchdog."""

    def __init__(self, response: Response) -> None:
        self.response = response
        self.sock = response.socket
        self.mark_bytes = 0
        self.bytes = 0
        self.mark_time = time.monotonic()
        self.stalled = False
        self.seen_bytes = 0  # what the watchdog saw last, and when it changed
        self.seen_time = self.mark_time


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
        self.requests = 0
        self._cond = threading.Condition()
        self._count_lock = threading.Lock()
        self._pending: deque[_FileFetch] = deque()
        self._active: list[_FileFetch] = []
        self._runs: set[_Run] = set()
        self._budgets: dict[Origin, ConnectionBudget] = {}
        self._busy: dict[Origin, int] = {}
        self._origin_bytes: dict[Origin, int] = {}
        self._results: list[DownloadResult] = []
        self._failures: list[tuple[str, str]] = []
        self._remaining = 0
        self._transfers: dict[int, _Transfer] = {}
        self._transfers_lock = threading.Lock()
        self._finished = threading.Event()
        self._ssl_context = shared_ssl_context()

    # ------------------------------------------------------------------ public

    def download(self, items: Sequence[DownloadItem]) -> list[DownloadResult]:
        """Fetch and verify every item; return their results in order of completion.

        Raises DownloadError listing every file that failed (the others are kept and
        recorded), or DownloadInterruptedError when ``stop`` was set.
        """
        if not items:
            return []
        fetches = [
            _FileFetch(item, PartFile(item.dest, item.identity, item.size)) for item in items
        ]
        with self._cond:
            self._pending.extend(fetches)
            self._remaining = len(fetches)
        already = 0
        for fetch in fetches:
            resumable = fetch.part.resumable() if fetch.item.ranges else None
            already += resumable.total if resumable else 0
        self.progress.begin(sum(i.size or 0 for i in items), len(items), already=already)
        workers = [
            threading.Thread(target=self._worker, name=f"dl-{n}", daemon=True)
            for n in range(max(1, self.config.connections))
        ]
        watchdog = threading.Thread(target=self._watchdog, name="dl-watchdog", daemon=True)
        for thread in [*workers, watchdog]:
            thread.start()
        try:
            for thread in workers:
                while thread.is_alive():
                    thread.join(timeout=0.5)
            for fetch in fetches:
                if fetch.verifier is not None:
                    while fetch.verifier.is_alive():
                        fetch.verifier.join(timeout=0.5)
        except KeyboardInterrupt:
            self.stop.set()
            raise
        finally:
            self._finished.set()
            with self._cond:
                self._cond.notify_all()
            for fetch in fetches:
                fetch.part.close()
        if self._failures:
            raise DownloadError(self._failures)
        if self._remaining:
            raise DownloadInterruptedError(
                f"stopped with {self._remaining} file(s) unfinished; their partial data is "
                "kept and resumes on the next run"
            )
        return list(self._results)

    def connection_limits(self) -> dict[str, int]:
        """Each server's connection limit now (``host:port`` -> limit)."""
        with self._cond:
            return {f"{o[1]}:{o[2]}": b.limit for o, b in self._budgets.items()}

    # ------------------------------------------------------------------ scheduling

    def _budget(self, origin: Origin) -> ConnectionBudget:
        budget = self._budgets.get(origin)
        if budget is None:
            budget = ConnectionBudget(
                self.config.budget(), time.monotonic(), name=f"{origin[1]}:{origin[2]}"
            )
            self._budgets[origin] = budget
            self._busy[origin] = 0
            self._origin_bytes[origin] = 0
        return budget

    def _next_work(self) -> _Run | None:
        with self._cond:
            while True:
                if self.stop.is_set() or self._remaining == 0:
                    return None
                now = time.monotonic()
                wake = now + 0.5
                for fetch in self._active:
                    if fetch.failed or fetch.finished:
                        continue
                    origin = fetch.origin
                    if self._busy.get(origin, 0) >= self._budget(origin).limit:
                        continue
                    run, retry_at = self._claim(fetch, origin, now)
                    if run is not None:
                        return self._start(run)
                    if retry_at is not None:
                        wake = min(wake, retry_at)
                claimable = sum(1 for f in self._active if not f.failed and f.unclaimed())
                if self._pending and claimable < self.config.max_files:
                    fetch = self._pending.popleft()
                    try:
                        self._open_fetch(fetch)
                    except OSError as exc:
                        self._fail_locked(fetch, f"cannot write {fetch.part.path}: {exc}")
                        continue
                    self._active.append(fetch)
                    continue
                run = self._steal()
                if run is not None:
                    return self._start(run)
                self._cond.wait(timeout=max(0.01, wake - now))

    def _start(self, run: _Run) -> _Run:
        self._runs.add(run)
        self._busy[run.origin] = self._busy.get(run.origin, 0) + 1
        run.fetch.in_flight += 1
        return run

    def _claim(
        self, fetch: _FileFetch, origin: Origin, now: float
    ) -> tuple[_Run | None, float | None]:
        """The file's next run (its fair share from the first free block), or when a block
        waiting out a retry delay may be claimed."""
        n = len(fetch.done)
        retry_at: float | None = None
        k = fetch.front
        while k < n:
            if fetch.owner[k] is None and not fetch.block_complete(k):
                if fetch.not_before[k] <= now:
                    break
                retry_at = (
                    fetch.not_before[k] if retry_at is None else min(retry_at, fetch.not_before[k])
                )
            k += 1
        if k >= n:
            return None, retry_at
        share = fetch.remaining() // (2 * self._budget(origin).limit)
        want = max(fetch.part.block_size, share)
        if self.config.piece_size:
            want = min(want, self.config.piece_size)
        run = _Run(fetch, k, k, fetch.part.block_start(k) + fetch.done[k], origin)
        got = 0
        j = k
        while j < n and got < want:
            if j > k and (
                fetch.owner[j] is not None
                or fetch.done[j] != 0
                or fetch.block_complete(j)
                or fetch.not_before[j] > now
            ):
                break
            fetch.owner[j] = run
            length = fetch.part.block_length(j)
            got += (length if length >= 0 else want) - fetch.done[j]
            j += 1
        run.end = j
        return run, None

    def _steal(self) -> _Run | None:
        """Split the run in flight with the most blocks nobody has started (the tail of the
        download): the idle worker takes the second half."""
        best: tuple[int, _Run, int] | None = None
        for run in self._runs:
            fetch = run.fetch
            if fetch.failed or not fetch.ranges or run.preempted:
                continue
            if self._busy.get(run.origin, 0) >= self._budget(run.origin).limit:
                continue
            # The blocks after the one being written (a read never crosses a block's end).
            untouched = run.end - (run.position // fetch.part.block_size + 1)
            if untouched < 1:
                continue
            if best is None or untouched > best[2]:
                best = (untouched * fetch.part.block_size, run, untouched)
        if best is None:
            return None
        _, victim, untouched = best
        fetch = victim.fetch
        mid = victim.end - (untouched + 1) // 2
        thief = _Run(
            fetch, mid, victim.end, fetch.part.block_start(mid) + fetch.done[mid], victim.origin
        )
        for j in range(mid, victim.end):
            fetch.owner[j] = thief
        victim.end = mid
        return thief

    def _release(self, run: _Run, error: _RetryError | None) -> None:
        fetch = run.fetch
        with self._cond:
            self._runs.discard(run)
            if not run.preempted:
                self._busy[run.origin] -= 1
            fetch.in_flight -= 1
            for j in range(run.first, min(run.end, len(fetch.owner))):
                if fetch.owner[j] is run:
                    fetch.owner[j] = None
            if error is not None and not fetch.failed:
                now = time.monotonic()
                if error.pushback:
                    origin = error.origin or run.origin
                    busy = self._busy.get(origin, 0)
                    self._budget(origin).pushback(now, error.delay_s, str(error), busy)
                k = (
                    min(len(fetch.done) - 1, run.position // fetch.part.block_size)
                    if fetch.size
                    else 0
                )
                fetch.attempts[k] += 1
                if fetch.attempts[k] > self.config.retries:
                    self._fail_locked(
                        fetch,
                        f"gave up after {fetch.attempts[k]} attempts at bytes "
                        f"{run.position}-: {error}",
                    )
                else:
                    delay = error.delay_s
                    if delay is None:
                        backoff = self.config.retry_base_s * 2 ** (fetch.attempts[k] - 1)
                        delay = min(self.config.retry_cap_s, backoff) * random.uniform(0.5, 1.5)  # noqa: S311 - jitter
                    fetch.not_before[k] = now + delay
                    log.info(
                        "retrying %s in %.1fs (attempt %d/%d): %s",
                        fetch.key,
                        delay,
                        fetch.attempts[k] + 1,
                        self.config.retries + 1,
                        error,
                    )
            self._cond.notify_all()
        with fetch.cond:
            fetch.cond.notify_all()

    def _preempt(self, run: _Run) -> bool:
        """Whether ``run`` should give its connection back: its server's limit was lowered
        below the connections in use."""
        with self._cond:
            budget = self._budgets[run.origin]
            if run.preempted or self._busy[run.origin] <= budget.limit:
                return False
            self._busy[run.origin] -= 1
            run.preempted = True
            return True

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

    def _open_fetch(self, fetch: _FileFetch) -> None:
        item = fetch.item
        fetch.size = item.size
        fetch.ranges = item.ranges and item.size is not None
        resumed = fetch.part.resumable() if fetch.ranges else None
        done = fetch.part.open(self._block_size(fetch), resumed)
        fetch.reset_blocks(done)
        self.progress.file_started(fetch.key, fetch.size, sum(done))
        fetch.verifier = threading.Thread(
            target=self._verify, args=(fetch,), name=f"verify-{fetch.key}"[:60], daemon=True
        )
        fetch.verifier.start()

    def _block_size(self, fetch: _FileFetch) -> int:
        if not fetch.size:
            return 1
        if not fetch.ranges:
            return fetch.size  # one block: the whole body
        return block_size_for(fetch.size, self.config.piece_size)

    # ------------------------------------------------------------------ workers

    def _worker(self) -> None:
        buffer = memoryview(bytearray(BUFFER))
        session = Session(
            self.tokens,
            connect_timeout=self.config.connect_timeout_s,
            read_timeout=self.config.stall_timeout_s,
            ssl_context=self._ssl_context,
        )
        try:
            while True:
                run = self._next_work()
                if run is None:
                    return
                fetch = run.fetch
                error: _RetryError | None = None
                try:
                    self._fetch_run(session, run, buffer)
                except _RetryError as exc:
                    error = exc
                except _StoppedError:
                    pass
                except HttpError as exc:
                    cause = exc.__cause__
                    error = _RetryError(
                        str(exc),
                        pushback=isinstance(cause, ConnectionRefusedError | ConnectionResetError),
                        origin=origin_of(exc.url) if exc.url else None,
                    )
                except _FatalError as exc:
                    with self._cond:
                        self._fail_locked(fetch, str(exc))
                except OSError as exc:
                    with self._cond:
                        self._fail_locked(fetch, f"cannot write {fetch.part.path}: {exc}")
                self._release(run, error)
        finally:
            session.close()

    def _fetch_run(self, session: Session, run: _Run, buffer: memoryview) -> None:
        fetch = run.fetch
        headers: dict[str, str] = {}
        end = fetch.run_end(run)
        if fetch.ranges:
            assert end is not None
            if run.position >= end:
                return
            headers["Range"] = f"bytes={run.position}-{end - 1}"
        elif fetch.done[0]:
            self._rewind(fetch)  # no ranges: the body starts over, and so does the file
            run.position = 0
        url = fetch.final_url or fetch.item.url
        with self._count_lock:
            self.requests += 1
        response = session.request("GET", url, headers)
        complete = False
        try:
            status = response.status
            if status in _REFRESH_STATUS and fetch.final_url is not None:
                fetch.final_url = None
                raise _RetryError(f"HTTP {status} from the redirect target; resolving it again", 0)
            if status in _RETRYABLE_STATUS:
                retry_after = _retry_after(response.headers.get("Retry-After"))
                raise _RetryError(
                    f"HTTP {status}",
                    retry_after,
                    pushback=status in _PUSHBACK_STATUS or retry_after is not None,
                    origin=origin_of(response.url),
                )
            if status == 206:
                self._check_range(fetch, response.headers.get("Content-Range", ""), run.position)
            elif status == 200:
                if fetch.ranges and not (run.position == 0 and end == fetch.size):
                    raise _RetryError("server ignored the Range header (answered 200)")
            else:
                raise _FatalError(f"HTTP {status} from {safe_url(response.url)}")
            if response.hops and fetch.final_url is None:
                fetch.final_url = response.url
            complete = self._stream(run, response, buffer)
        finally:
            response.close(reuse=complete)

    def _rewind(self, fetch: _FileFetch) -> None:
        self.progress.file_rewound(fetch.key, fetch.done[0])
        fetch.done[0] = 0
        with fetch.hash_lock:
            fetch.hasher = hashlib.sha256()
            fetch.hashed = 0
        fetch.front = 0

    def _check_range(self, fetch: _FileFetch, value: str, start: int) -> None:
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

    def _stream(self, run: _Run, response: Response, buffer: memoryview) -> bool:
        """Read the run's bytes into the part file; True when the response was read to its
        end (the connection can be reused), False when the run stopped short of it (split,
        or its connection given back)."""
        fetch = run.fetch
        part = fetch.part
        block = part.block_size
        requested_end = fetch.run_end(run)
        transfer = _Transfer(response)
        ident = threading.get_ident()
        with self._transfers_lock:
            self._transfers[ident] = transfer
        position = run.position
        k = position // block if fetch.size else 0
        since_notify = 0
        received = 0
        try:
            while True:
                if self.stop.is_set() or fetch.failed:
                    raise _StoppedError
                end = fetch.run_end(run)
                want = buffer
                if end is not None:
                    if end <= position:
                        return position == requested_end
                    # Up to the end of the block at most: a thief takes whole blocks after it.
                    left = min(end, (position // block + 1) * block) - position
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
                    raise _RetryError(
                        f"connection broke: {type(exc).__name__}: {exc}",
                        pushback=isinstance(exc, ConnectionResetError),
                        origin=run.origin,
                    ) from None
                if n == 0:
                    if end is None:
                        # A body of unknown length ended: now the file has a size.
                        fetch.size = position
                        fetch.eof = True
                        return True
                    if received == 0:
                        raise _RetryError(f"empty response at byte {position}")
                    return True  # a shorter 206 than asked for: the rest is claimed again
                received += n
                # A thief may have taken blocks while this read waited: keep what is ours.
                end = fetch.run_end(run)
                keep = n if end is None else max(0, min(n, end - position))
                data = want[:keep]
                part.write(data, position)
                new_position = position + keep
                k = self._account(fetch, run, k, new_position)
                if fetch.hashed == position and fetch.hash_lock.acquire(blocking=False):
                    try:  # this run extends the hashed prefix: hash from the buffer
                        if fetch.hashed == position:
                            fetch.hasher.update(data)
                            fetch.hashed = new_position
                    finally:
                        fetch.hash_lock.release()
                position = run.position = new_position
                transfer.bytes += keep
                with self._count_lock:
                    self.bytes_fetched += keep
                    fetch.fetched += keep
                    self._origin_bytes[run.origin] += keep
                self.progress.advance(fetch.key, keep)
                since_notify += keep
                if since_notify >= NOTIFY_BYTES:
                    since_notify = 0
                    with fetch.cond:
                        fetch.cond.notify_all()
                if keep < n:
                    return False
                budget = self._budgets[run.origin]
                if self._busy[run.origin] > budget.limit and self._preempt(run):
                    return False
        finally:
            with self._transfers_lock:
                self._transfers.pop(ident, None)

    def _account(self, fetch: _FileFetch, run: _Run, k: int, position: int) -> int:
        """Record the blocks from ``k`` written up to ``position``; the block now written."""
        part = fetch.part
        if fetch.size is None:
            fetch.done[0] = position
            part.record(0, position)
            return 0
        block = part.block_size
        last = len(fetch.done) - 1
        while True:
            start = k * block
            length = part.block_length(k)
            upto = min(position - start, length)
            if fetch.owner[k] is run and upto > fetch.done[k]:
                fetch.done[k] = upto
                part.record(k, upto)
            if position < start + length or k >= last:
                return k
            k += 1

    def _watchdog(self) -> None:
        interval = min(0.25, self.config.stall_timeout_s / 4)
        # Reads wake only once http.LOWAT bytes are in: a read that brought nothing for this
        # long is woken for what there is (a slow connection, or the last bytes before a stall).
        quiet_s = 2 * interval
        while not self._finished.wait(interval):
            now = time.monotonic()
            with self._cond:
                for origin, budget in self._budgets.items():
                    before = budget.limit
                    budget.observe(now, self._origin_bytes[origin], self._busy[origin])
                    if budget.limit > before:
                        self._cond.notify_all()
            with self._transfers_lock:
                transfers = list(self._transfers.values())
            for transfer in transfers:
                if transfer.bytes != transfer.seen_bytes:
                    transfer.seen_bytes, transfer.seen_time = transfer.bytes, now
                elif now - transfer.seen_time >= quiet_s:
                    transfer.response.wake_on_any_byte()  # a slow or stalling connection
                if transfer.bytes - transfer.mark_bytes >= STALL_BYTES:
                    transfer.mark_bytes, transfer.mark_time = transfer.bytes, now
                elif now - transfer.mark_time > self.config.stall_timeout_s and transfer.sock:
                    transfer.stalled = True
                    with contextlib.suppress(OSError):
                        transfer.sock.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ verification

    def _verify(self, fetch: _FileFetch) -> None:
        try:
            self._verify_loop(fetch)
        except Exception as exc:
            log.exception("verifying %s failed", fetch.key)
            with self._cond:
                self._fail_locked(fetch, f"verification failed: {exc}")

    def _verify_loop(self, fetch: _FileFetch) -> None:
        while True:
            while True:
                with fetch.cond:
                    while True:
                        if fetch.failed or self.stop.is_set():
                            return
                        target = fetch.prefix()
                        with self._cond:
                            settled = fetch.all_complete() and fetch.in_flight == 0
                        if target > fetch.hashed or settled:
                            break
                        fetch.cond.wait(timeout=0.2)
                self._catch_up(fetch, target)
                if settled and fetch.hashed >= fetch.prefix():
                    break
            with fetch.hash_lock:
                digest = fetch.hasher.hexdigest()
                position = fetch.hashed
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
                fetch.part.discard()
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
                fetch.size = fetch.item.size
                with fetch.hash_lock:
                    fetch.hasher = hashlib.sha256()
                    fetch.hashed = 0
                fetch.reset_blocks(fetch.part.open(self._block_size(fetch), None))
                self._cond.notify_all()

    def _catch_up(self, fetch: _FileFetch, target: int) -> None:
        """Hash the written bytes up to ``target`` that no worker hashed from its buffer,
        from the part file; the lock is let go between chunks so that the worker at the
        front can take over."""
        while True:
            with fetch.hash_lock:
                start = fetch.hashed
                stop = min(target, fetch.prefix(), start + HASH_CHUNK)
                if stop <= start:
                    return
                fetch.part.digest(fetch.hasher, start, stop)
                fetch.hashed = stop

    def _finish(self, fetch: _FileFetch, digest: str, size: int) -> None:
        self.progress.file_state(fetch.key, "verified, saving")
        fetch.part.complete(fsync=self.config.fsync)
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


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return min(float(value.strip()), 120.0)
    return None
