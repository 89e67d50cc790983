"""What every storage backend offers the uploader and the gateway."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

_KEY_CHARS = re.compile(r"^[^\x00-\x1f\x7f\\]+$")


class StorageError(RuntimeError):
    """The store refused or failed an operation (after its own retries)."""


class UploadInterruptedError(StorageError):
    """The upload was stopped on request (shutdown); nothing was left in the bucket."""


def validate_key(key: str) -> str:
    """Reject keys that could escape a local store or confuse a bucket listing."""
    if not key or len(key.encode()) > 1024:
        raise ValueError("object key must be 1..1024 bytes")
    if not _KEY_CHARS.match(key):
        raise ValueError(f"object key has control characters or backslashes: {key!r}")
    if key.startswith("/") or posixpath.normpath(key) != key or key.split("/")[0] == "..":
        raise ValueError(f"object key must be a normalised relative path: {key!r}")
    return key


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str | None
    etag: str | None = None
    content_type: str | None = None


@dataclass
class MultipartHooks:
    """Callbacks around a multipart upload, so the caller can record the upload id (to abort
    it after a crash), report progress and ask for a stop between parts."""

    started: Callable[[str], None] = lambda upload_id: None
    finished: Callable[[str], None] = lambda upload_id: None
    progress: Callable[[int], None] = lambda done: None
    should_stop: Callable[[], bool] = field(default=lambda: False)


class Storage(Protocol):
    kind: str
    multipart_threshold: int

    def check(self) -> None:
        """Raise StorageError if the store cannot be reached (readiness)."""

    def head(self, key: str) -> ObjectInfo | None: ...

    def put_bytes(self, key: str, data: bytes, *, sha256: str, content_type: str) -> ObjectInfo:
        """Store a small object in one request."""

    def put_fd(
        self,
        key: str,
        fd: int,
        size: int,
        *,
        sha256: str,
        content_type: str,
        hooks: MultipartHooks | None = None,
    ) -> ObjectInfo:
        """Store ``size`` bytes read with pread from ``fd`` (multipart where it applies).
        A failed or interrupted upload leaves no partial object or multipart upload behind."""

    def abort_multipart(self, key: str, upload_id: str) -> bool:
        """True once the upload is gone (aborted now or already)."""

    def list_multipart(self, prefix: str = "") -> list[tuple[str, str]]:
        """(key, upload_id) of multipart uploads not completed or aborted."""

    def url(self, key: str, expires_s: int) -> str: ...

    def delete(self, key: str) -> None: ...

    def download(self, key: str, path: str) -> None: ...
