from __future__ import annotations

import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from genstack.testing.s3_server import S3Server


def test_put_and_get_over_http(s3_server: S3Server, s3_bucket: str) -> None:
    assert s3_server.endpoint_url.startswith("http://")
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key="a/b.png", Body=b"\x89PNG...", Metadata={"k": "v"})
    got = client.get_object(Bucket=s3_bucket, Key="a/b.png")
    assert got["Body"].read() == b"\x89PNG..."
    assert got["Metadata"] == {"k": "v"}


def test_any_boto3_client_with_the_credentials_works(s3_server: S3Server, s3_bucket: str) -> None:
    # Services build their own clients from settings: endpoint, keys and region are enough.
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name=s3_server.region,
    )
    client.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
    assert [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]] == ["k"]


def test_each_bucket_is_new(s3_server: S3Server) -> None:
    first, second = s3_server.create_bucket(), s3_server.create_bucket()
    assert first != second
    name = f"named-{uuid.uuid4().hex[:8]}"
    assert s3_server.create_bucket(name) == name


def test_reset_drops_everything(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
    s3_server.reset()
    with pytest.raises(ClientError, match="NoSuchBucket"):
        client.get_object(Bucket=s3_bucket, Key="k")
