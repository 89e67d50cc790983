"""Find finished files in the watched folders and queue their upload.

Two sources, because either alone loses files:
- inotify (through watchdog): ``close_write`` and ``moved_to`` mark a file complete; after a
  short quiet time (any further write restarts it) the file is queued. Fast: tens of ms.
  A file moved in from outside the watched folders is a ``moved_to`` with no source (inotify
  has none to pair it with): it is complete like any other rename. A bare ``create`` (a file
  someone is about to write) is queued once still for UPLOAD_STABLE_S, unless its
  ``close_write`` comes first.
- rescans, at start and every UPLOAD_RESCAN_INTERVAL_S: every wanted file that the ledger
  does not know in its current size/mtime, and that has been still for UPLOAD_STABLE_S, is
  queued. This catches files written while the uploader was down and events that were lost
  (inotify queue overflow, watch limits, network filesystems).
The ledger check here only saves queue traffic; the task itself is idempotent.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from watchdog.events import (
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from genstack.uploader.ledger import UploadLedger
from genstack.uploader.paths import AllowedRoots, PathRefusedError

log = logging.getLogger(__name__)

Source = Literal["watch", "rescan"]
Enqueue = Callable[[str, Source], None]


class _Events(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_closed(self, event: FileClosedEvent) -> None:  # close_write
        self.watcher.schedule(_text(event.src_path))

    def on_moved(self, event: FileSystemEvent) -> None:  # moved_to (atomic rename into place)
        if isinstance(event, DirMovedEvent):
            self.watcher.rescan_later()
        elif isinstance(event, FileMovedEvent) and event.dest_path:  # no dest: moved away
            self.watcher.schedule(_text(event.dest_path))

    def on_modified(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileModifiedEvent):
            self.watcher.activity(_text(event.src_path))

    def on_created(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileCreatedEvent):
            self.watcher.created(_text(event.src_path))


def _text(path: str | bytes) -> str:
    return os.fsdecode(path)


def _observer() -> BaseObserver:
    """inotify with full events where there is inotify: a rename into the folder from an
    unwatched one then arrives as a move (complete), not as a create (maybe half-written)."""
    try:
        from watchdog.observers.inotify import InotifyObserver
    except ImportError:  # not Linux: the platform's observer, and rescans
        return Observer()
    return InotifyObserver(generate_full_events=True)


class Watcher:
    def __init__(
        self,
        roots: AllowedRoots,
        ledger: UploadLedger,
        enqueue: Enqueue,
        *,
        settle_s: float,
        stable_s: float,
        rescan_interval_s: float,
        requeue_after_s: float,
    ) -> None:
        self.roots = roots
        self.ledger = ledger
        self.enqueue = enqueue
        self.settle_s = settle_s
        self.stable_s = stable_s
        self.rescan_interval_s = rescan_interval_s
        self.requeue_after_s = requeue_after_s
        # path -> (when to queue it, the quiet time a further write restarts)
        self._due: dict[str, tuple[float, float]] = {}
        self._wake = threading.Condition()
        self._stopped = threading.Event()
        self._rescan_now = threading.Event()
        self._threads: list[threading.Thread] = []
        self._observer: BaseObserver | None = None

    # lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        for root in self.roots.configured:
            root.mkdir(parents=True, exist_ok=True)
        self._observer = _observer()
        handler = _Events(self)
        for root in self.roots.configured:
            self._observer.schedule(handler, str(root), recursive=True)
        try:
            self._observer.start()
        except OSError as exc:  # inotify watch limit, or a filesystem without inotify
            log.warning("file events unavailable, relying on rescans", extra={"err": str(exc)})
            self._observer = None
        for target, name in ((self._settle_loop, "settle"), (self._rescan_loop, "rescan")):
            thread = threading.Thread(target=target, name=f"watcher-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopped.set()
        self._rescan_now.set()
        with self._wake:
            self._wake.notify_all()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)

    @property
    def waiting(self) -> int:
        """Files seen but not queued yet (still settling)."""
        return len(self._due)

    # events -------------------------------------------------------------------------------
    def schedule(self, path: str) -> None:
        """The file is complete (closed after writing, or renamed into place)."""
        with self._wake:
            self._due[path] = (time.monotonic() + self.settle_s, self.settle_s)
            self._wake.notify()

    def created(self, path: str) -> None:
        """A new name: being written (its close_write follows) or moved in from outside."""
        with self._wake:
            if path not in self._due:
                self._due[path] = (time.monotonic() + self.stable_s, self.stable_s)
                self._wake.notify()

    def activity(self, path: str) -> None:
        """A write to a file we are about to queue: it is not finished, wait again."""
        with self._wake:
            if path in self._due:
                quiet = self._due[path][1]
                self._due[path] = (time.monotonic() + quiet, quiet)

    def rescan_later(self) -> None:
        self._rescan_now.set()

    def _settle_loop(self) -> None:
        while not self._stopped.is_set():
            with self._wake:
                now = time.monotonic()
                ready = [p for p, (due, _) in self._due.items() if due <= now]
                for path in ready:
                    del self._due[path]
                if not ready:
                    timeout = min((due for due, _ in self._due.values()), default=now + 1) - now
                    self._wake.wait(timeout=max(timeout, 0.001))
                    continue
            for path in ready:
                try:
                    self._consider(path, "watch")
                except Exception:
                    log.exception("could not queue a file", extra={"path": path})

    # rescans ------------------------------------------------------------------------------
    def _rescan_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                queued = self.rescan()
                if queued:
                    log.info("rescan queued files", extra={"queued": queued})
            except Exception:
                log.exception("rescan failed; next one in %ss", self.rescan_interval_s)
            self._rescan_now.wait(self.rescan_interval_s)
            self._rescan_now.clear()

    def rescan(self) -> int:
        queued = 0
        for root in self.roots.configured:
            for directory, subdirs, files in os.walk(root):
                subdirs[:] = [d for d in subdirs if not d.startswith(".")]
                paths = [os.path.join(directory, name) for name in files]
                queued += self._consider_batch(paths)
                if self._stopped.is_set():
                    return queued
        return queued

    def _consider_batch(self, paths: list[str]) -> int:
        candidates: list[tuple[str, os.stat_result]] = []
        for path in paths:
            try:
                resolved = self.roots.resolve(path)
            except PathRefusedError:
                continue
            if not self.roots.wanted(resolved.relative):
                continue
            try:
                st = os.stat(resolved.real)
            except FileNotFoundError:
                continue
            if time.time() - st.st_mtime < self.stable_s:
                continue  # still being written, or just written: its event (or the next scan)
            candidates.append((str(resolved.real), st))
        if not candidates:
            return 0
        reals = [real for real, _ in candidates]
        entries = self.ledger.get_many(reals)
        pendings = self.ledger.pending_since(reals)
        now = time.time()
        queued = 0
        for (real, st), entry, pending in zip(candidates, entries, pendings, strict=True):
            if entry and (entry.size, entry.mtime_ns) == (st.st_size, st.st_mtime_ns):
                continue
            if pending is not None and now - pending < self.requeue_after_s:
                continue
            self._queue(real, "rescan")
            queued += 1
        return queued

    def _consider(self, path: str, source: Source) -> None:
        try:
            resolved = self.roots.resolve(Path(path))
        except PathRefusedError:
            return
        if not self.roots.wanted(resolved.relative):
            return
        try:
            st = os.stat(resolved.real)
        except FileNotFoundError:
            return  # gone again (a temporary output): nothing to upload
        entry = self.ledger.get(str(resolved.real))
        if entry and (entry.size, entry.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return
        self._queue(str(resolved.real), source)

    def _queue(self, real: str, source: Source) -> None:
        self.ledger.mark_pending(real)
        self.enqueue(real, source)
