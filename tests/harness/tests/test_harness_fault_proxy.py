"""FaultProxy between boto3 and the real S3 server."""

from __future__ import annotations

import hashlib
import io
import os
import time

import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from genstack.testing.plugin import MakeFaultProxy
from genstack.testing.s3_server import S3Server

# total_max_attempts counts the first try; max_attempts counts only retries.
NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})


def test_error_rate_one_answers_500_to_everything(
    s3_server: S3Server, s3_bucket: str, fault_proxy: MakeFaultProxy
) -> None:
    proxy = fault_proxy(s3_server.endpoint_url, error_rate=1.0)
    client = s3_server.client(proxy.url, config=NO_RETRIES)
    calls = [
        lambda: client.put_object(Bucket=s3_bucket, Key="k", Body=b"x"),
        lambda: client.get_object(Bucket=s3_bucket, Key="k"),
        lambda: client.head_object(Bucket=s3_bucket, Key="k"),
        lambda: client.list_objects_v2(Bucket=s3_bucket),
    ]
    for call in calls:
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    with httpx.Client(trust_env=False) as http:
        raw = http.get(f"{proxy.url}/{s3_bucket}")
    assert raw.status_code == 500
    assert "<Code>InternalError</Code>" in raw.text
    assert "injected by FaultProxy" in raw.text
    assert (proxy.requests, proxy.errors, proxy.forwarded) == (5, 5, 0)
    assert [method for method, _ in proxy.seen] == ["PUT", "GET", "HEAD", "GET", "GET"]
    assert proxy.seen[0][1] == f"/{s3_bucket}/k"
    # Nothing reached the server.
    assert s3_server.client().list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0


def test_drop_rate_one_is_a_connection_error(
    s3_server: S3Server, s3_bucket: str, fault_proxy: MakeFaultProxy
) -> None:
    proxy = fault_proxy(s3_server.endpoint_url, drop_rate=1.0)
    client = s3_server.client(proxy.url, config=NO_RETRIES)
    with pytest.raises((HTTPClientError, BotoConnectionError)):
        client.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
    assert (proxy.requests, proxy.drops, proxy.forwarded) == (1, 1, 0)
    assert s3_server.client().list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0


def test_large_object_round_trips_byte_identical(
    s3_server: S3Server, s3_bucket: str, fault_proxy: MakeFaultProxy
) -> None:
    proxy = fault_proxy(s3_server.endpoint_url)
    client = s3_server.client(proxy.url, config=NO_RETRIES)
    data = os.urandom(50 * 1024 * 1024)
    # A file-like body makes botocore send "Expect: 100-continue", which the proxy must handle.
    client.put_object(Bucket=s3_bucket, Key="big", Body=io.BytesIO(data))
    got = client.get_object(Bucket=s3_bucket, Key="big")["Body"].read()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    assert client.head_object(Bucket=s3_bucket, Key="big")["ContentLength"] == len(data)
    assert proxy.forwarded == proxy.requests == 3


def test_delay_adds_latency_and_can_change_at_run_time(
    s3_server: S3Server, s3_bucket: str, fault_proxy: MakeFaultProxy
) -> None:
    proxy = fault_proxy(s3_server.endpoint_url, delay_s=0.4)
    client = s3_server.client(proxy.url, config=NO_RETRIES)

    def timed_head() -> float:
        started = time.monotonic()
        client.head_bucket(Bucket=s3_bucket)
        return time.monotonic() - started

    timed_head()  # connection set-up out of the way
    assert timed_head() >= 0.4
    proxy.set_faults(delay_s=0.0)
    assert timed_head() < 0.3


def test_standard_retries_get_through_mixed_faults(
    s3_server: S3Server, s3_bucket: str, fault_proxy: MakeFaultProxy
) -> None:
    proxy = fault_proxy(s3_server.endpoint_url, error_rate=0.3, drop_rate=0.1, seed=20240)
    client = s3_server.client(
        proxy.url, config=Config(retries={"mode": "standard", "max_attempts": 10})
    )
    for i in range(50):
        client.put_object(Bucket=s3_bucket, Key=f"obj-{i}", Body=f"body {i}".encode())
    assert proxy.errors > 0 and proxy.drops > 0  # the faults really happened
    assert proxy.forwarded == 50
    direct = s3_server.client()
    for i in range(50):
        body = direct.get_object(Bucket=s3_bucket, Key=f"obj-{i}")["Body"].read()
        assert body == f"body {i}".encode()


def test_match_limits_faults_to_some_requests(
    s3_server: S3Server, s3_bucket: str, fault_proxy: MakeFaultProxy
) -> None:
    proxy = fault_proxy(
        s3_server.endpoint_url, error_rate=1.0, match=lambda method, path: method == "PUT"
    )
    client = s3_server.client(proxy.url, config=NO_RETRIES)
    client.list_objects_v2(Bucket=s3_bucket)
    with pytest.raises(ClientError):
        client.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
    assert (proxy.forwarded, proxy.errors) == (1, 1)
