"""S3-compatible storage tuned for Cloudflare R2.

- ``region auto`` and SigV4, path-style by default (works with R2, MinIO and moto alike).
- Checksums ``when_required``: boto3 >= 1.36 otherwise adds CRC headers R2 rejects; the
  object's sha256 travels as ``x-amz-meta-sha256`` and is checked by HEAD instead.
- Multipart is done here, not by s3transfer, so the upload id is known at once (a crash
  can be cleaned up on restart), parts are read with ``pread`` from one descriptor (the
  same inode that was hashed), and a failure always aborts the upload.
- Downloads use s3transfer's *classic* client: the CRT one ignores custom endpoints.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Literal

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from genstack.core.storage.base import (
    MultipartHooks,
    ObjectInfo,
    StorageError,
    UploadInterruptedError,
    validate_key,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

MiB = 1024 * 1024
SHA256_META = "sha256"


class S3Storage:
    kind = "s3"

    def __init__(
        self,
        *,
        endpoint_url: str | None,
        bucket: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        region: str = "auto",
        addressing_style: Literal["path", "virtual", "auto"] = "path",
        part_size: int = 16 * MiB,
        multipart_threshold: int = 16 * MiB,
        concurrency: int = 8,
        max_attempts: int = 8,
        pool_size: int | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        if part_size < 5 * MiB:
            raise ValueError("S3 multipart parts must be at least 5 MiB")
        self.bucket = bucket
        self.part_size = part_size
        self.multipart_threshold = max(multipart_threshold, 1)
        self.concurrency = concurrency
        # Every concurrent part needs its own connection, or threads queue on the pool.
        pool = max(pool_size or 0, concurrency + 2)
        config = Config(
            region_name=region,
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            retries={"max_attempts": max_attempts, "mode": "standard"},
            max_pool_connections=pool,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            tcp_keepalive=True,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self.client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )
        self._transfer_config = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=part_size,
            max_concurrency=concurrency,
            preferred_transfer_client="classic",
        )

    # reads --------------------------------------------------------------------------------
    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"bucket {self.bucket!r} is not reachable: {exc}") from exc

    def head(self, key: str) -> ObjectInfo | None:
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise StorageError(f"HEAD {key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"HEAD {key} failed: {exc}") from exc
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            sha256=response.get("Metadata", {}).get(SHA256_META),
            etag=response.get("ETag", "").strip('"') or None,
            content_type=response.get("ContentType"),
        )

    def url(self, key: str, expires_s: int) -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
        )

    def download(self, key: str, path: str) -> None:
        self.client.download_file(self.bucket, key, path, Config=self._transfer_config)

    def list_multipart(self, prefix: str = "") -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            response = self.client.list_multipart_uploads(**kwargs)
            found += [(u["Key"], u["UploadId"]) for u in response.get("Uploads", [])]
            if not response.get("IsTruncated"):
                return found
            kwargs["KeyMarker"] = response["NextKeyMarker"]
            kwargs["UploadIdMarker"] = response["NextUploadIdMarker"]

    # writes -------------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, *, sha256: str, content_type: str) -> ObjectInfo:
        validate_key(key)
        try:
            response = self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                Metadata={SHA256_META: sha256},
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"PUT {key} failed: {exc}") from exc
        return ObjectInfo(key, len(data), sha256, response.get("ETag", "").strip('"'), content_type)

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
        validate_key(key)
        hooks = hooks or MultipartHooks()
        if size < self.multipart_threshold:
            if hooks.should_stop():
                raise UploadInterruptedError(f"upload of {key} stopped before it started")
            info = self.put_bytes(
                key, os.pread(fd, size, 0), sha256=sha256, content_type=content_type
            )
            hooks.progress(size)
            return info
        return self._put_multipart(key, fd, size, sha256, content_type, hooks)

    def _put_multipart(
        self,
        key: str,
        fd: int,
        size: int,
        sha256: str,
        content_type: str,
        hooks: MultipartHooks,
    ) -> ObjectInfo:
        try:
            created = self.client.create_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                ContentType=content_type,
                Metadata={SHA256_META: sha256},
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"starting multipart upload of {key} failed: {exc}") from exc
        upload_id = created["UploadId"]
        hooks.started(upload_id)
        try:
            parts = self._upload_parts(key, upload_id, fd, size, hooks)
            response = self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
            )
        except BaseException as exc:
            # Forget the upload id only once the abort went through; otherwise the caller's
            # record lets a later sweep abort it.
            if self.abort_multipart(key, upload_id):
                hooks.finished(upload_id)
            if isinstance(exc, (ClientError, BotoCoreError)):
                raise StorageError(f"multipart upload of {key} failed: {exc}") from exc
            raise
        hooks.finished(upload_id)
        return ObjectInfo(key, size, sha256, response.get("ETag", "").strip('"'), content_type)

    def _ranges(self, size: int) -> Iterator[tuple[int, int, int]]:
        for number, offset in enumerate(range(0, size, self.part_size), start=1):
            yield number, offset, min(self.part_size, size - offset)

    def _upload_parts(
        self, key: str, upload_id: str, fd: int, size: int, hooks: MultipartHooks
    ) -> list[dict[str, Any]]:
        done = 0
        lock = threading.Lock()

        def send(number: int, offset: int, length: int) -> dict[str, Any]:
            nonlocal done
            if hooks.should_stop():
                raise UploadInterruptedError(f"upload of {key} stopped at part {number}")
            data = os.pread(fd, length, offset)
            if len(data) != length:
                raise StorageError(f"{key}: file shrank while uploading (part {number})")
            response = self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )
            with lock:
                done += length
                hooks.progress(done)
            return {"PartNumber": number, "ETag": response["ETag"]}

        # Submit lazily, at most `concurrency` parts in flight: memory stays at
        # concurrency x part size whatever the file size.
        results: list[dict[str, Any]] = []
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="s3-part") as pool:
            pending: set[Future[dict[str, Any]]] = set()
            try:
                for number, offset, length in self._ranges(size):
                    if len(pending) >= self.concurrency:
                        # The next part starts as soon as any one is done (a failed one
                        # raises here): waiting for the whole batch would let one slow
                        # part idle every other connection.
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for future in finished:
                            results.append(future.result())
                    pending.add(pool.submit(send, number, offset, length))
                for future in wait(pending).done:
                    results.append(future.result())
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
        return sorted(results, key=lambda part: int(part["PartNumber"]))

    def abort_multipart(self, key: str, upload_id: str) -> bool:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                return True
            log.warning("abort of multipart upload failed", extra={"key": key, "err": str(exc)})
            return False
        except BotoCoreError as exc:
            log.warning("abort of multipart upload failed", extra={"key": key, "err": str(exc)})
            return False
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)
