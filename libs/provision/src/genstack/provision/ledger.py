"""The ledger of verified files, so a restart does not re-hash hundreds of gigabytes.

``<models root>/.genstack/ledger.json`` records, per destination path, the size, the
modification time (ns) and the sha256 a file had when it was verified, and the source it
came from. A file whose size and mtime still match its record, and whose record matches the
entry (same source, same expected sha256), is taken as verified after one ``stat``. Anything
else (no record, a different size or mtime, a changed manifest entry) is hashed again or
fetched again. The ledger is rewritten atomically (temp file, fsync, rename) after each file,
so a kill loses at most the file in flight.

A lock file next to it (``flock``) keeps two provisioning runs (a service starting while
``genstack-provision`` runs by hand) off the same models root at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["LedgerRecord", "ModelLedger", "SnapshotFile", "fsync_dir", "provision_lock"]

log = logging.getLogger(__name__)

LEDGER_VERSION = 1
ShaOrigin = Literal["manifest", "hub", "computed"]


@dataclass(frozen=True)
class LedgerRecord:
    size: int
    mtime_ns: int
    sha256: str
    source: str
    sha256_origin: ShaOrigin
    verified_at: float


@dataclass(frozen=True)
class SnapshotFile:
    """One file of a repository source as the hub listed it."""

    path: str
    size: int
    sha256: str | None


class ModelLedger:
    """Verified files under one models root. Thread-safe; every change is saved at once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / ".genstack"
        self.path = self.dir / "ledger.json"
        self._lock = threading.Lock()
        self._files: dict[str, LedgerRecord] = {}
        self._snapshots: dict[str, list[SnapshotFile]] = {}
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            # Worst case of a lost ledger: files are hashed once more. Never fatal.
            log.warning("ignoring unreadable ledger %s: %s", self.path, exc)
            return
        if not isinstance(data, dict) or data.get("version") != LEDGER_VERSION:
            log.warning("ignoring ledger %s of an unknown version", self.path)
            return
        try:
            self._files = {k: LedgerRecord(**v) for k, v in data.get("files", {}).items()}
            self._snapshots = {
                k: [SnapshotFile(**f) for f in v] for k, v in data.get("snapshots", {}).items()
            }
        except TypeError as exc:
            log.warning("ignoring malformed ledger %s: %s", self.path, exc)
            self._files, self._snapshots = {}, {}

    def _save_locked(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        payload: dict[str, Any] = {
            "version": LEDGER_VERSION,
            "files": {k: asdict(v) for k, v in sorted(self._files.items())},
            "snapshots": {k: [asdict(f) for f in v] for k, v in sorted(self._snapshots.items())},
        }
        tmp = self.path.with_name(f"ledger.json.{os.getpid()}.{threading.get_ident()}.tmp")
        with tmp.open("w", encoding="utf-8") as out:
            json.dump(payload, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.path)
        fsync_dir(self.dir)

    def get(self, rel: str) -> LedgerRecord | None:
        with self._lock:
            return self._files.get(rel)

    def check(self, rel: str, source: str, expected_sha256: str | None) -> LedgerRecord | None:
        """The record of ``rel`` if the file on disk is still the one verified, else None."""
        record = self.get(rel)
        if record is None or record.source != source:
            return None
        if expected_sha256 is not None and record.sha256 != expected_sha256:
            return None
        try:
            stat = (self.root / rel).stat()
        except OSError:
            return None
        if stat.st_size != record.size or stat.st_mtime_ns != record.mtime_ns:
            return None
        return record

    def record(self, rel: str, sha256: str, source: str, origin: ShaOrigin) -> LedgerRecord:
        stat = (self.root / rel).stat()
        record = LedgerRecord(
            size=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
            sha256=sha256,
            source=source,
            sha256_origin=origin,
            verified_at=time.time(),
        )
        with self._lock:
            self._files[rel] = record
            self._save_locked()
        return record

    def forget(self, rel: str) -> None:
        with self._lock:
            if self._files.pop(rel, None) is not None:
                self._save_locked()

    def snapshot(self, key: str) -> list[SnapshotFile] | None:
        with self._lock:
            files = self._snapshots.get(key)
            return None if files is None else list(files)

    def set_snapshot(self, key: str, files: list[SnapshotFile]) -> None:
        with self._lock:
            self._snapshots[key] = list(files)
            self._save_locked()


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def provision_lock(root: Path) -> Iterator[None]:
    """Hold the models root's provisioning lock (blocks while another process holds it)."""
    lock_dir = root / ".genstack"
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / "provision.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(
                "another provisioning run holds %s; waiting for it",
                lock_dir / "provision.lock",
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock
