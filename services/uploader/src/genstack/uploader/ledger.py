"""What the uploader remembers in Redis, per host.

- ledger: path -> the verified upload of its current content (size, mtime, sha256, key, etag).
  It makes every upload idempotent: duplicate events, redelivered tasks and rescans find the
  file already done, and a rewritten file (new size/mtime and sha256) is uploaded again.
- pending: path -> when it was queued, so a rescan does not queue it again while it waits.
- multipart: upload id -> key of multipart uploads in flight, aborted at the next start if
  the process died before it could abort them itself.
- failed: path -> last error of a file that exhausted its retries (until a rescan retries it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any, cast

from pydantic import BaseModel
from redis import Redis


class LedgerEntry(BaseModel):
    path: str
    size: int
    mtime_ns: int
    sha256: str
    key: str
    etag: str | None = None
    content_type: str = "application/octet-stream"
    uploaded_at: float


class UploadLedger:
    def __init__(self, redis: Redis, node_id: str, *, prefix: str = "genstack") -> None:
        self.redis = redis
        base = f"{prefix}:upload:{node_id}"
        self.entries_key = f"{base}:ledger"
        self.pending_key = f"{base}:pending"
        self.multipart_key = f"{base}:multipart"
        self.failed_key = f"{base}:failed"
        self.lock_prefix = f"{base}:lock:"

    def lock_key(self, path: str) -> str:
        return f"{self.lock_prefix}{path}"

    def clear_locks(self) -> int:
        """Drop the per-file locks of this node: at start-up they can only be the previous
        process's (one uploader per node), and waiting out their TTL would stall uploads."""
        keys = list(self.redis.scan_iter(match=f"{self.lock_prefix}*", count=1000))
        return int(self.redis.delete(*keys)) if keys else 0

    # verified uploads ---------------------------------------------------------------------
    def get(self, path: str) -> LedgerEntry | None:
        raw = self.redis.hget(self.entries_key, path)
        return None if raw is None else LedgerEntry.model_validate_json(raw)

    def get_many(self, paths: list[str]) -> list[LedgerEntry | None]:
        if not paths:
            return []
        raws = self.redis.hmget(self.entries_key, paths)
        return [None if raw is None else LedgerEntry.model_validate_json(raw) for raw in raws]

    def record(self, entry: LedgerEntry) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.entries_key, entry.path, entry.model_dump_json())
        pipe.hdel(self.pending_key, entry.path)
        pipe.hdel(self.failed_key, entry.path)
        pipe.execute()

    def count(self) -> int:
        return int(self.redis.hlen(self.entries_key))

    # queued -------------------------------------------------------------------------------
    def mark_pending(self, path: str) -> None:
        self.redis.hset(self.pending_key, path, str(time.time()))

    def pending_since(self, paths: list[str]) -> list[float | None]:
        if not paths:
            return []
        return [None if v is None else float(v) for v in self.redis.hmget(self.pending_key, paths)]

    def clear_pending(self, path: str | None = None) -> None:
        if path is None:
            self.redis.delete(self.pending_key)
        else:
            self.redis.hdel(self.pending_key, path)

    def pending_count(self) -> int:
        return int(self.redis.hlen(self.pending_key))

    # multipart uploads in flight ----------------------------------------------------------
    def multipart_started(self, upload_id: str, key: str) -> None:
        self.redis.hset(self.multipart_key, upload_id, json.dumps({"key": key, "t": time.time()}))

    def multipart_finished(self, upload_id: str) -> None:
        self.redis.hdel(self.multipart_key, upload_id)

    def multipart_in_flight(self) -> Iterable[tuple[str, str]]:
        """(upload_id, key) pairs."""
        rows: dict[str, str] = cast(Any, self.redis.hgetall(self.multipart_key))
        for upload_id, raw in rows.items():
            yield upload_id, json.loads(raw)["key"]

    # failures -----------------------------------------------------------------------------
    def record_failure(self, path: str, error: str, attempts: int) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            self.failed_key,
            path,
            json.dumps({"error": error, "attempts": attempts, "t": time.time()}),
        )
        pipe.hdel(self.pending_key, path)  # so the next rescan queues it again
        pipe.execute()

    def failures(self) -> dict[str, dict[str, object]]:
        rows: dict[str, str] = cast(Any, self.redis.hgetall(self.failed_key))
        return {path: json.loads(raw) for path, raw in rows.items()}

    def failed_count(self) -> int:
        return int(self.redis.hlen(self.failed_key))
