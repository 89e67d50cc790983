"""Local object store: the embedded default when no R2 is configured.

Objects live under ``root/<key>`` with the same keys R2 would get; their sha256 and
content type sit in a sidecar under ``root/.meta/``. Every write goes to a temporary name
and is renamed into place, so a reader never sees half an object.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from genstack.core.storage.base import (
    MultipartHooks,
    ObjectInfo,
    StorageError,
    UploadInterruptedError,
    validate_key,
)

CHUNK = 8 * 1024 * 1024


@contextmanager
def _atomic_write(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


META_DIR = ".meta"


class LocalStorage:
    kind = "local"

    def __init__(self, root: Path, *, multipart_threshold: int = 16 * 1024 * 1024) -> None:
        self.root = root
        self.multipart_threshold = multipart_threshold

    def _path(self, key: str) -> Path:
        validate_key(key)
        if key.split("/")[0] == META_DIR:
            raise ValueError(f"object key may not start with {META_DIR}/")
        return self.root / key

    def _meta_path(self, key: str) -> Path:
        return self.root / META_DIR / f"{key}.json"

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"local storage {self.root} is not writable: {exc}") from exc
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"local storage {self.root} is not writable")

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            size = path.stat().st_size
            meta = json.loads(self._meta_path(key).read_text())
        except FileNotFoundError:
            return None
        return ObjectInfo(key, size, meta.get("sha256"), meta.get("sha256"), meta.get("type"))

    def put_bytes(self, key: str, data: bytes, *, sha256: str, content_type: str) -> ObjectInfo:
        path = self._path(key)
        with _atomic_write(path) as handle:
            handle.write(data)
        self._write_meta(key, sha256, content_type)
        return ObjectInfo(key, len(data), sha256, sha256, content_type)

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
        hooks = hooks or MultipartHooks()
        path = self._path(key)
        with _atomic_write(path) as handle:
            offset = 0
            while offset < size:
                if hooks.should_stop():
                    raise UploadInterruptedError(f"copy of {key} stopped at byte {offset}")
                chunk = os.pread(fd, min(CHUNK, size - offset), offset)
                if not chunk:
                    raise StorageError(f"{key}: file shrank while copying")
                handle.write(chunk)
                offset += len(chunk)
                hooks.progress(offset)
        self._write_meta(key, sha256, content_type)
        return ObjectInfo(key, size, sha256, sha256, content_type)

    def abort_multipart(self, key: str, upload_id: str) -> bool:
        return True  # nothing to abort: partial copies are temp files removed on failure

    def list_multipart(self, prefix: str = "") -> list[tuple[str, str]]:
        return []

    def url(self, key: str, expires_s: int) -> str:
        return self._path(key).resolve().as_uri()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
        self._meta_path(key).unlink(missing_ok=True)

    def download(self, key: str, path: str) -> None:
        shutil.copyfile(self._path(key), path)

    def _write_meta(self, key: str, sha256: str, content_type: str) -> None:
        meta = self._meta_path(key)
        with _atomic_write(meta, mode="w") as handle:
            json.dump({"sha256": sha256, "type": content_type}, handle)
