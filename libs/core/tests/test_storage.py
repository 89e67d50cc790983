"""Storage backends: S3Storage against a real S3 HTTP server (moto server mode), LocalStorage
on disk. Both must honour the same contract."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from genstack.core.storage import (
    LocalStorage,
    MultipartHooks,
    S3Storage,
    StorageError,
    UploadInterruptedError,
    validate_key,
)
from genstack.core.storage.s3 import MiB
from genstack.testing.plugin import MakeFaultProxy
from genstack.testing.s3_server import S3Server


def s3_storage(
    server: S3Server, bucket: str, endpoint: str | None = None, **kw: object
) -> S3Storage:
    options: dict[str, object] = {"part_size": 5 * MiB, "multipart_threshold": 5 * MiB}
    options.update(kw)
    return S3Storage(
        endpoint_url=endpoint or server.endpoint_url,
        bucket=bucket,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        region="auto",
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def payload(tmp_path: Path) -> Iterator[tuple[int, int, str]]:
    """An open file of 12 MiB + 123 bytes (three parts of 5 MiB), its size and sha256."""
    data = os.urandom(12 * MiB + 123)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd, len(data), hashlib.sha256(data).hexdigest()
    finally:
        os.close(fd)


def test_s3_small_object_round_trip(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    storage = s3_storage(s3_server, s3_bucket)
    storage.check()
    sha = hashlib.sha256(b"hello").hexdigest()
    info = storage.put_bytes(
        "outputs/2026-01-01/a.txt", b"hello", sha256=sha, content_type="text/plain"
    )
    head = storage.head("outputs/2026-01-01/a.txt")
    assert head is not None
    assert (head.size, head.sha256, head.content_type) == (5, sha, "text/plain")
    assert head.etag == info.etag
    assert storage.head("outputs/missing") is None
    # A presigned URL is a plain GET anyone can make until it expires.
    url = storage.url("outputs/2026-01-01/a.txt", 60)
    with httpx.Client(trust_env=False) as http:
        assert http.get(url).content == b"hello"
    target = tmp_path / "down.txt"
    storage.download("outputs/2026-01-01/a.txt", str(target))
    assert target.read_bytes() == b"hello"


def test_s3_multipart_is_byte_identical_with_progress(
    s3_server: S3Server, s3_bucket: str, payload: tuple[int, int, str], tmp_path: Path
) -> None:
    fd, size, sha = payload
    storage = s3_storage(s3_server, s3_bucket, concurrency=2)
    started: list[str] = []
    finished: list[str] = []
    progress: list[int] = []
    hooks = MultipartHooks(
        started=started.append, finished=finished.append, progress=progress.append
    )
    storage.put_fd(
        "big.bin", fd, size, sha256=sha, content_type="application/octet-stream", hooks=hooks
    )
    assert started == finished and len(started) == 1
    assert progress[-1] == size
    head = storage.head("big.bin")
    assert head is not None and (head.size, head.sha256) == (size, sha)
    target = tmp_path / "big.down"
    storage.download("big.bin", str(target))
    assert hashlib.sha256(target.read_bytes()).hexdigest() == sha
    assert storage.list_multipart() == []


def test_s3_failed_multipart_is_aborted(
    s3_server: S3Server, s3_bucket: str, payload: tuple[int, int, str], fault_proxy: MakeFaultProxy
) -> None:
    fd, size, sha = payload
    # Part uploads fail (the CreateMultipartUpload and Abort calls pass), with no retries.
    proxy = fault_proxy(
        s3_server.endpoint_url,
        error_rate=1.0,
        match=lambda method, target: method == "PUT" and "partNumber=" in target,
    )
    storage = s3_storage(s3_server, s3_bucket, endpoint=proxy.url, max_attempts=1)
    finished: list[str] = []
    with pytest.raises(StorageError, match=r"multipart upload of big\.bin failed"):
        storage.put_fd(
            "big.bin",
            fd,
            size,
            sha256=sha,
            content_type="x/y",
            hooks=MultipartHooks(finished=finished.append),
        )
    assert len(finished) == 1  # aborted, so the caller may forget the upload id
    assert s3_storage(s3_server, s3_bucket).list_multipart() == []
    assert s3_storage(s3_server, s3_bucket).head("big.bin") is None


def test_s3_stop_between_parts_leaves_nothing(
    s3_server: S3Server, s3_bucket: str, payload: tuple[int, int, str]
) -> None:
    fd, size, sha = payload
    storage = s3_storage(s3_server, s3_bucket, concurrency=1)
    done: list[int] = []
    hooks = MultipartHooks(progress=done.append, should_stop=lambda: bool(done))
    with pytest.raises(UploadInterruptedError):
        storage.put_fd("big.bin", fd, size, sha256=sha, content_type="x/y", hooks=hooks)
    assert storage.list_multipart() == []
    assert storage.head("big.bin") is None


def test_s3_abort_of_a_forgotten_upload(s3_server: S3Server, s3_bucket: str) -> None:
    storage = s3_storage(s3_server, s3_bucket)
    upload = storage.client.create_multipart_upload(Bucket=s3_bucket, Key="orphan")
    assert storage.list_multipart() == [("orphan", upload["UploadId"])]
    assert storage.abort_multipart("orphan", upload["UploadId"])
    assert storage.list_multipart() == []
    assert storage.abort_multipart("orphan", upload["UploadId"])  # already gone: fine


def test_s3_unreachable_bucket_is_a_storage_error(s3_server: S3Server) -> None:
    storage = s3_storage(s3_server, "no-such-bucket", max_attempts=1)
    with pytest.raises(StorageError, match="no-such-bucket"):
        storage.check()


def test_s3_sends_no_default_checksums(
    s3_server: S3Server, s3_bucket: str, payload: tuple[int, int, str]
) -> None:
    # R2 and other S3-compatible stores reject boto3's default CRC32 checksums (headers or
    # aws-chunked trailers): the requests that go on the wire must carry none.
    sent: list[dict[str, str]] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append({k.lower(): str(v) for k, v in request.headers.items()})

    storage = s3_storage(s3_server, s3_bucket)
    storage.client.meta.events.register("before-send.s3", capture)
    fd, size, sha = payload
    storage.put_bytes("k", b"abc", sha256=hashlib.sha256(b"abc").hexdigest(), content_type="x/y")
    storage.put_fd("big", fd, size, sha256=sha, content_type="x/y")
    assert len(sent) >= 5  # put, create, 3 parts, complete
    for headers in sent:
        assert not [h for h in headers if h.startswith("x-amz-checksum")], headers
        assert "x-amz-sdk-checksum-algorithm" not in headers
        assert "aws-chunked" not in headers.get("content-encoding", "")


def test_local_round_trip_and_atomic_meta(tmp_path: Path, payload: tuple[int, int, str]) -> None:
    fd, size, sha = payload
    storage = LocalStorage(tmp_path / "store", multipart_threshold=5 * MiB)
    storage.check()
    progress: list[int] = []
    storage.put_fd(
        "outputs/d/x.bin",
        fd,
        size,
        sha256=sha,
        content_type="x/y",
        hooks=MultipartHooks(progress=progress.append),
    )
    head = storage.head("outputs/d/x.bin")
    assert head is not None and (head.size, head.sha256, head.content_type) == (size, sha, "x/y")
    assert progress[-1] == size
    assert hashlib.sha256((tmp_path / "store/outputs/d/x.bin").read_bytes()).hexdigest() == sha
    assert not list((tmp_path / "store/outputs/d").glob(".tmp-*"))
    storage.delete("outputs/d/x.bin")
    assert storage.head("outputs/d/x.bin") is None


def test_local_interrupted_copy_leaves_nothing(
    tmp_path: Path, payload: tuple[int, int, str]
) -> None:
    fd, size, sha = payload
    storage = LocalStorage(tmp_path / "store")
    with pytest.raises(UploadInterruptedError):
        storage.put_fd(
            "k.bin",
            fd,
            size,
            sha256=sha,
            content_type="x/y",
            hooks=MultipartHooks(should_stop=lambda: True),
        )
    assert storage.head("k.bin") is None
    assert [p.name for p in (tmp_path / "store").iterdir()] == []


@pytest.mark.parametrize(
    "key",
    ["", "/abs", "../up", "a/../../b", "a//b", "a/./b", "with\\backslash", "ctl\x00", "x" * 1025],
)
def test_bad_keys_are_refused(key: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="object key"):
        validate_key(key)
    with pytest.raises(ValueError):
        LocalStorage(tmp_path).put_bytes(key, b"x", sha256="0" * 64, content_type="x/y")
    assert list(tmp_path.iterdir()) == []


def test_local_meta_folder_is_not_a_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.meta"):
        LocalStorage(tmp_path).put_bytes(".meta/x", b"x", sha256="0" * 64, content_type="x/y")
