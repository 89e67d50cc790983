"""The gateway with R2/S3 storage (a real S3 HTTP server): artifact URLs are presigned GETs
on the bucket, /v1/files redirects to one, and images.generate hands them out."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from genstack.testing.redis_server import RedisServer
from genstack.testing.s3_server import S3Server
from genstack.testing.sse import read_sse
from genstack.testing.stack import (
    RunningGateway,
    start_gateway,
    start_job_worker,
    start_uploader,
)


@dataclass
class S3Stack:
    gateway: RunningGateway
    endpoint: str
    bucket: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[S3Stack]:
    root = tmp_path_factory.mktemp("s3stack")
    bucket = s3_server.create_bucket()
    r2 = {
        "R2_ENDPOINT": s3_server.endpoint_url,
        "R2_BUCKET": bucket,
        "R2_ACCESS_KEY_ID": s3_server.access_key,
        "R2_SECRET_ACCESS_KEY": s3_server.secret_key,
        "R2_REGION": s3_server.region,
        "ENABLE_R2_SYNC": "true",
        "PRESIGN_EXPIRY_S": "600",
    }
    redis = RedisServer(root / "redis")
    redis.start()
    started: list[Any] = []
    try:
        started.append(start_uploader(redis.url, root, env=r2))
        started.append(start_job_worker(redis.url, root, ["tts.xtts", "comfyui"]))
        gateway = start_gateway(redis.url, root, env=r2)
        started.append(gateway)
        yield S3Stack(gateway, s3_server.endpoint_url, bucket)
    finally:
        for process in reversed(started):
            process.stop()
        redis.close()


def test_artifact_urls_are_presigned_bucket_urls(stack: S3Stack) -> None:
    with httpx.Client(base_url=stack.gateway.url, headers=stack.gateway.headers) as http:
        job = http.post(
            "/v1/jobs", json={"type": "tts", "params": {"input": "to R2", "voice": "alice"}}
        ).json()
        with http.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
            assert list(read_sse(response))[-1].json()["status"] == "succeeded"
        (artifact,) = http.get(f"/v1/jobs/{job['id']}").json()["artifacts"]
        url = artifact["url"]
        assert url.startswith(f"{stack.endpoint}/{stack.bucket}/{artifact['key']}")
        assert "X-Amz-Signature=" in url and "X-Amz-Expires=600" in url
        audio = httpx.get(url)
        assert audio.status_code == 200
        assert hashlib.sha256(audio.content).hexdigest() == artifact["sha256"]
        # /v1/files/{key} with a key: a redirect to the same kind of URL.
        redirect = http.get(f"/v1/files/{artifact['key']}")
        assert redirect.status_code == 307
        assert urlsplit(redirect.headers["location"]).path == urlsplit(url).path


def test_images_generate_hands_out_presigned_urls(stack: S3Stack) -> None:
    client = openai.OpenAI(
        base_url=f"{stack.gateway.url}/v1", api_key=stack.gateway.api_key, max_retries=0
    )
    result = client.images.generate(prompt="a red fox", n=1, size="256x256")
    (image,) = result.data
    assert image.url is not None and image.url.startswith(f"{stack.endpoint}/{stack.bucket}/")
    png = httpx.get(image.url)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
