"""Artifact URLs: presigned GETs on R2/S3, or signed, expiring gateway links
``/v1/files/{key}?expires=..&signature=..`` when outputs are in local storage."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from urllib.parse import quote

from redis import Redis

from genstack.core.jobs import Job
from genstack.core.storage import Storage

FILES_PATH = "/v1/files/"


def shared_signing_key(redis: Redis, prefix: str) -> bytes:
    """A random key made once and kept in Redis, so every replica signs alike."""
    name = f"{prefix}:gateway:files-signing-key"
    redis.set(name, secrets.token_hex(32), nx=True)
    value = redis.get(name)
    if not value:
        raise RuntimeError(f"could not read {name} back from Redis")
    return str(value).encode()


class FileSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def signature(self, object_key: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{object_key}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def verify(self, object_key: str, expires: str, signature: str, now: float) -> bool:
        if not expires.isdigit() or int(expires) < now:
            return False
        expected = self.signature(object_key, int(expires))
        return hmac.compare_digest(expected.encode(), signature.encode())

    def path(self, object_key: str, expires: int) -> str:
        signature = self.signature(object_key, expires)
        return f"{FILES_PATH}{quote(object_key)}?expires={expires}&signature={signature}"


class ArtifactLinks:
    """Fresh links on every read: the ones stored with the job may have expired."""

    def __init__(self, storage: Storage, signer: FileSigner, expiry_s: int) -> None:
        self.storage = storage
        self.signer = signer
        self.expiry_s = expiry_s

    def url(self, object_key: str, base_url: str) -> str:
        if self.storage.kind == "s3":
            return self.storage.url(object_key, self.expiry_s)
        expires = int(time.time()) + self.expiry_s
        return base_url.rstrip("/") + self.signer.path(object_key, expires)

    def render(self, job: Job, base_url: str) -> Job:
        if not job.artifacts:
            return job
        artifacts = [a.model_copy(update={"url": self.url(a.key, base_url)}) for a in job.artifacts]
        return job.model_copy(update={"artifacts": artifacts})
