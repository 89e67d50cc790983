"""The uploader as users run it: the `genstack-uploader run` process against a real
redis-server and a real S3 server, usually through a FaultProxy that counts requests."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from celery import Celery

from genstack.core.celery_app import create_celery_app
from genstack.testing.fault_proxy import FaultProxy
from genstack.testing.plugin import MakeFaultProxy, StartServiceProcess
from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess, console_script
from genstack.testing.redis_server import RedisServer
from genstack.testing.s3_server import S3Server

NODE = "test-node"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Rig:
    redis: RedisServer
    s3: S3Server
    bucket: str
    proxy: FaultProxy
    output_dir: Path
    workdir: Path
    start_process: StartServiceProcess
    env: dict[str, str] = field(default_factory=dict)

    def start(self, **overrides: str) -> ServiceProcess:
        port = free_port()
        env = {
            **self.env,
            "UPLOAD_METRICS_PORT": str(port),
            **{k.upper(): v for k, v in overrides.items()},
        }
        process = self.start_process(
            [console_script("genstack-uploader"), "run"],
            env=env,
            ready_url=f"http://127.0.0.1:{port}/readyz",
            name="uploader",
            cwd=self.workdir,
        )
        process.wait_ready(timeout=60)
        self.metrics_port = port
        return process

    def objects(self) -> dict[str, str]:
        """key -> sha256 of every object in the bucket (read directly, not via the proxy)."""
        client = self.s3.client()
        found: dict[str, str] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                body = client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                found[item["Key"]] = sha256(body)
        return found

    def object_keys(self) -> set[str]:
        client = self.s3.client()
        keys: set[str] = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            keys.update(item["Key"] for item in page.get("Contents", []))
        return keys

    def writes(self) -> dict[str, int]:
        """How many times each key was written through the proxy (PUT of a whole object or
        a completed multipart upload)."""
        counts: dict[str, int] = {}
        prefix = f"/{self.bucket}/"
        for method, target in list(self.proxy.seen):
            path, _, query = target.partition("?")
            whole_put = method == "PUT" and "partNumber=" not in query and path.startswith(prefix)
            completed = method == "POST" and "uploadId=" in query
            if whole_put or completed:
                key = path[len(prefix) :]
                counts[key] = counts.get(key, 0) + 1
        return counts

    def celery(self) -> Celery:
        return create_celery_app("test-producer", self.redis.url)

    def key_for(self, path: Path) -> str:
        date = time.strftime("%Y-%m-%d", time.gmtime(path.stat().st_mtime))
        return f"outputs/{date}/{path.relative_to(self.output_dir).as_posix()}"


@pytest.fixture
def rig(
    tmp_path: Path,
    redis_server: RedisServer,
    s3_server: S3Server,
    s3_bucket: str,
    fault_proxy: MakeFaultProxy,
    service_process: StartServiceProcess,
) -> Rig:
    output_dir = tmp_path / "outputs"
    output_dir.mkdir()
    workdir = tmp_path / "work"  # no .env here: the process sees only what the test sets
    workdir.mkdir()
    proxy = fault_proxy(s3_server.endpoint_url)
    env = {
        "REDIS_URL": redis_server.url,
        "NODE_ID": NODE,
        "OUTPUT_DIR": str(output_dir),
        "STORAGE_DIR": str(tmp_path / "unused-local-storage"),
        "R2_ENDPOINT": proxy.url,
        "R2_BUCKET": s3_bucket,
        "R2_ACCESS_KEY_ID": s3_server.access_key,
        "R2_SECRET_ACCESS_KEY": s3_server.secret_key,
        "R2_PART_SIZE_MB": "5",
        "R2_MULTIPART_THRESHOLD_MB": "8",
        "R2_CONCURRENCY": "4",
        "UPLOAD_METRICS_HOST": "127.0.0.1",
        "UPLOAD_RESCAN_INTERVAL_S": "1",
        "UPLOAD_STABLE_S": "0.5",
        "UPLOAD_RETRY_BASE_S": "0.2",
        "UPLOAD_RETRY_MAX_S": "2",
        "CELERY_SOFT_SHUTDOWN_S": "3",
        "LOG_FORMAT": "text",
    }
    return Rig(redis_server, s3_server, s3_bucket, proxy, output_dir, workdir, service_process, env)
