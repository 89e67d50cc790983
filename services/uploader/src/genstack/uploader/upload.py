"""Upload one file, idempotently, and verify it: the heart of the uploader.

Celery-free, so it can be reasoned about (and tested) on its own; ``tasks.py`` adds the
queue, retries and backoff around it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mimetypes
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from redis import Redis
from redis.exceptions import LockError

from genstack.core.jobs import Artifact, JobError, JobStatus
from genstack.core.jobstore import InvalidTransitionError, JobNotFoundError, JobStore
from genstack.core.storage import MultipartHooks, ObjectInfo, Storage
from genstack.core.uploads import UploadRequest, date_of, object_key
from genstack.uploader.ledger import LedgerEntry, UploadLedger
from genstack.uploader.metrics import UploaderMetrics
from genstack.uploader.paths import AllowedRoots, PathRefusedError, ResolvedPath

log = logging.getLogger(__name__)

HASH_CHUNK = 8 * 1024 * 1024
LOCK_TTL_S = 60


class RetryableUploadError(RuntimeError):
    """Worth another try later: the store failed, the file changed, another task holds it."""


@dataclass(frozen=True)
class Outcome:
    result: Literal["uploaded", "skipped"]
    key: str
    size: int
    sha256: str
    reason: str = ""


@contextlib.contextmanager
def held_lock(redis: Redis, name: str, ttl_s: int = LOCK_TTL_S) -> Iterator[None]:
    """A per-file lock kept alive while we hold it, so two tasks for the same file (a
    duplicate event, a redelivery) never upload it side by side; it expires on its own if
    this process dies."""
    lock = redis.lock(name, timeout=ttl_s, blocking=False)
    if not lock.acquire():
        raise RetryableUploadError("another task is uploading this file")
    stop = threading.Event()

    def keep_alive() -> None:
        while not stop.wait(ttl_s / 3):
            with contextlib.suppress(LockError, OSError):
                lock.extend(ttl_s, replace_ttl=True)

    beat = threading.Thread(target=keep_alive, name="upload-lock", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        with contextlib.suppress(LockError, OSError):
            lock.release()


def content_type_of(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


class FileUploader:
    def __init__(
        self,
        *,
        roots: AllowedRoots,
        storage: Storage,
        ledger: UploadLedger,
        jobs: JobStore,
        metrics: UploaderMetrics,
        key_prefix: str = "outputs",
        max_file_bytes: int,
        url_expiry_s: int = 3600,
        delete_after_verify: bool = False,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.roots = roots
        self.storage = storage
        self.ledger = ledger
        self.jobs = jobs
        self.metrics = metrics
        self.key_prefix = key_prefix
        self.max_file_bytes = max_file_bytes
        self.url_expiry_s = url_expiry_s
        self.delete_after_verify = delete_after_verify
        self.should_stop = should_stop

    # public -------------------------------------------------------------------------------
    def upload(self, request: UploadRequest) -> Outcome:
        """Upload and verify ``request.path``; raises PathRefusedError (never worth a retry)
        or RetryableUploadError / StorageError (worth one)."""
        try:
            resolved = self.roots.resolve(request.path)
        except PathRefusedError:
            done = self._done_and_deleted(request)
            if done is not None:
                return done
            raise
        with held_lock(self.ledger.redis, self.ledger.lock_key(str(resolved.real))):
            return self._upload_locked(request, resolved)

    def report_failure(
        self, request: UploadRequest, error: BaseException, *, final: bool, attempts: int = 1
    ) -> None:
        kind = "refused" if isinstance(error, PathRefusedError) else "final" if final else "retry"
        self.metrics.failures.labels(kind).inc()
        if kind == "retry":
            log.warning(
                "upload failed, will retry", extra={"path": request.path, "err": str(error)}
            )
            return
        self.metrics.uploads.labels("failed").inc()
        log.error(
            "upload refused" if kind == "refused" else "upload failed, file kept for next rescan",
            extra={"path": request.path, "job_id": request.job_id, "err": str(error)},
        )
        if kind == "final":
            self.ledger.record_failure(request.path, str(error), attempts=attempts)
        else:
            self.ledger.clear_pending(request.path)
        if request.job_id:
            # The file stays on disk (a later rescan uploads it), but the job cannot promise
            # its artifacts any more: it ends failed, with the reason.
            with contextlib.suppress(JobNotFoundError):
                self.jobs.emit(
                    request.job_id,
                    "upload_failed",
                    {"path": os.path.basename(request.path), "error": str(error), "final": True},
                )
                job = self.jobs.require(request.job_id)
                if not job.status.terminal:
                    with contextlib.suppress(InvalidTransitionError):
                        self.jobs.set_status(
                            request.job_id,
                            JobStatus.FAILED,
                            error=JobError(
                                code="upload_refused" if kind == "refused" else "upload_failed",
                                message=f"{os.path.basename(request.path)}: {error}",
                            ),
                        )

    # internals ----------------------------------------------------------------------------
    def _upload_locked(self, request: UploadRequest, resolved: ResolvedPath) -> Outcome:
        started = time.monotonic()
        path = str(resolved.real)
        try:
            fd = os.open(resolved.real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise PathRefusedError(f"{request.path} does not exist") from exc
        except OSError as exc:
            raise PathRefusedError(f"{request.path} cannot be opened: {exc.strerror}") from exc
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise PathRefusedError(f"{request.path} is not a regular file")
            if before.st_size > self.max_file_bytes:
                raise PathRefusedError(
                    f"{request.path} is {before.st_size} bytes, over UPLOAD_MAX_FILE_GB"
                )
            entry = self.ledger.get(path)
            if entry and (entry.size, entry.mtime_ns) == (before.st_size, before.st_mtime_ns):
                return self._already_done(request, entry, "ledger")

            data, sha256 = self._hash(fd, before.st_size)
            date = request.date or date_of(before.st_mtime)
            if request.job_id:
                relative = self.roots.job_key_path(resolved, request.job_id)
            else:
                relative = self.roots.watched_key_path(resolved)
            key = object_key(self.key_prefix, date, relative)
            content_type = content_type_of(resolved.real.name)

            if entry and entry.sha256 == sha256 and entry.key == key:
                # Touched, not changed: remember the new mtime, upload nothing.
                entry = entry.model_copy(update={"mtime_ns": before.st_mtime_ns})
                self.ledger.record(entry)
                return self._already_done(request, entry, "same content")

            # A large object may already be there (a crash between its upload and the ledger
            # write): one HEAD can save gigabytes. A small one is re-sent: one PUT costs
            # about what the HEAD would.
            remote = self.storage.head(key) if data is None else None
            if not (remote and remote.size == before.st_size and remote.sha256 == sha256):
                remote = self._put(key, fd, before.st_size, data, sha256, content_type)
            else:
                log.info("object already in store, not uploaded again", extra={"key": key})

            after = os.fstat(fd)
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                raise RetryableUploadError(f"{request.path} changed while it was uploaded")
            verified = self.storage.head(key)
            if verified is None or verified.size != before.st_size or verified.sha256 != sha256:
                raise RetryableUploadError(
                    f"verification of {key} failed: store has "
                    f"{verified and (verified.size, verified.sha256)}, expected "
                    f"{(before.st_size, sha256)}"
                )
            entry = LedgerEntry(
                path=path,
                size=before.st_size,
                mtime_ns=before.st_mtime_ns,
                sha256=sha256,
                key=key,
                etag=verified.etag or remote.etag,
                content_type=content_type,
                uploaded_at=time.time(),
            )
            self.ledger.record(entry)
        finally:
            os.close(fd)

        self.metrics.uploads.labels("uploaded").inc()
        self.metrics.bytes.inc(entry.size)
        self.metrics.duration.observe(time.monotonic() - started)
        self.metrics.latency.observe(max(0.0, time.time() - before.st_mtime))
        log.info(
            "uploaded",
            extra={"key": key, "bytes": entry.size, "sha256": sha256, "job_id": request.job_id},
        )
        self._attach(request, entry)
        if self.delete_after_verify:
            self._delete_local(resolved, entry)
        return Outcome("uploaded", key, entry.size, sha256)

    def _hash(self, fd: int, size: int) -> tuple[bytes | None, str]:
        """Small files are read once: the same bytes are hashed and sent. Large ones are
        hashed in a first pass (the sha256 must be in the object's metadata when the
        multipart upload is created) and sent from the page cache in the second."""
        digest = hashlib.sha256()
        if size < self.storage.multipart_threshold:
            data = os.pread(fd, size, 0)
            digest.update(data)
            return data, digest.hexdigest()
        offset = 0
        while offset < size:
            chunk = os.pread(fd, min(HASH_CHUNK, size - offset), offset)
            if not chunk:
                raise RetryableUploadError("file shrank while it was hashed")
            digest.update(chunk)
            offset += len(chunk)
        return None, digest.hexdigest()

    def _put(
        self, key: str, fd: int, size: int, data: bytes | None, sha256: str, content_type: str
    ) -> ObjectInfo:
        if data is not None:
            if len(data) != size:
                raise RetryableUploadError("file changed while it was read")
            return self.storage.put_bytes(key, data, sha256=sha256, content_type=content_type)
        hooks = MultipartHooks(
            started=lambda upload_id: self.ledger.multipart_started(upload_id, key),
            finished=self.ledger.multipart_finished,
            should_stop=self.should_stop,
        )
        return self.storage.put_fd(
            key, fd, size, sha256=sha256, content_type=content_type, hooks=hooks
        )

    def _already_done(self, request: UploadRequest, entry: LedgerEntry, why: str) -> Outcome:
        self.ledger.clear_pending(entry.path)
        self.metrics.uploads.labels("skipped").inc()
        log.debug("already uploaded", extra={"key": entry.key, "why": why})
        self._attach(request, entry)
        return Outcome("skipped", entry.key, entry.size, entry.sha256, why)

    def _done_and_deleted(self, request: UploadRequest) -> Outcome | None:
        """A redelivered task for a file deleted after verification is done, not an error."""
        entry = self.ledger.get(os.path.realpath(request.path))
        if entry is None or os.path.lexists(request.path):
            return None
        return self._already_done(request, entry, "deleted after verify")

    def _attach(self, request: UploadRequest, entry: LedgerEntry) -> None:
        if not request.job_id:
            return
        artifact = Artifact(
            key=entry.key,
            url=self.storage.url(entry.key, self.url_expiry_s),
            content_type=entry.content_type,
            bytes=entry.size,
            sha256=entry.sha256,
        )
        try:
            self.jobs.add_artifact(request.job_id, artifact, complete_at=request.job_files)
        except JobNotFoundError:
            log.warning("job of an uploaded file is gone", extra={"job_id": request.job_id})

    def _delete_local(self, resolved: ResolvedPath, entry: LedgerEntry) -> None:
        try:
            now = os.stat(resolved.real, follow_symlinks=False)
        except FileNotFoundError:
            return
        # Only the exact bytes we verified: a file rewritten since then stays.
        if (now.st_size, now.st_mtime_ns) == (entry.size, entry.mtime_ns):
            resolved.real.unlink()
            log.info("deleted local copy after verify", extra={"key": entry.key})
