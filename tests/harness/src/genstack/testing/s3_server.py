"""A real S3-compatible HTTP server for tests: moto's server mode as a subprocess, or its
container where Docker answers. boto3 talks HTTP to it like to R2/S3."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import boto3
import httpx
from botocore.config import Config

from genstack.testing.logs import tail
from genstack.testing.ports import free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from testcontainers.core.container import DockerContainer

__all__ = ["ContainerS3Server", "S3Server", "s3_client_config"]

START_TIMEOUT_S = 30.0  # importing moto alone takes seconds on a loaded 2-core box
STOP_TIMEOUT_S = 10.0


def s3_client_config(config: Config | None = None) -> Config:
    """The botocore config every test client needs, merged with ``config`` (which wins).

    Path-style because the server has no wildcard DNS; checksums only when required because
    boto3 >= 1.36 sends default checksums that R2 and other S3-compatible stores reject.
    """
    base = Config(
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return base if config is None else base.merge(config)


class S3Server:
    """``python -m moto.server`` on 127.0.0.1 in its own process (not moto's in-process mock,
    so boto3 goes through real HTTP and real sockets)."""

    def __init__(self, port: int | None = None) -> None:
        self._host = "127.0.0.1"
        self._port = port if port is not None else free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._admin: S3Client | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def access_key(self) -> str:
        return "testing"

    @property
    def secret_key(self) -> str:
        return "testing"

    @property
    def region(self) -> str:
        return "us-east-1"

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        fd, name = tempfile.mkstemp(prefix="moto-server-", suffix=".log")
        self._log_path = Path(name)
        argv = [sys.executable, "-m", "moto.server", "-H", self._host, "-p", str(self._port)]
        with os.fdopen(fd, "wb") as log:
            self._proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"moto server on port {self._port} exited with {self._proc.returncode} while "
                    f"starting; log tail:\n{self._log_tail()}"
                )
            if _answers_http(self.endpoint_url):
                return
            time.sleep(0.1)
        raise TimeoutError(
            f"S3 server at {self.endpoint_url} did not answer within {START_TIMEOUT_S}s; "
            f"log tail:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        return tail(self._log_path) if self._log_path is not None else ""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self._admin = None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def client(self, endpoint_url: str | None = None, *, config: Config | None = None) -> S3Client:
        """A boto3 S3 client for this server, or for ``endpoint_url`` (e.g. a FaultProxy in
        front of it) with this server's credentials. ``config`` is merged over the defaults
        (e.g. ``Config(retries={"mode": "standard", "max_attempts": 10})``)."""
        return boto3.client(
            "s3",
            endpoint_url=endpoint_url or self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=s3_client_config(config),
        )

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a random ``test-…`` name when None) and return its name."""
        bucket = name or f"test-{uuid.uuid4().hex[:16]}"
        if self._admin is None:
            # One client for the server's lifetime: building one costs ~50 ms.
            self._admin = self.client()
        self._admin.create_bucket(Bucket=bucket)
        return bucket

    def r2_env(self, bucket: str) -> dict[str, str]:
        """The environment that points genstack's uploader and gateway at ``bucket`` here."""
        return {
            "R2_ENDPOINT": self.endpoint_url,
            "R2_BUCKET": bucket,
            "R2_ACCESS_KEY_ID": self.access_key,
            "R2_SECRET_ACCESS_KEY": self.secret_key,
            "R2_REGION": self.region,
            "ENABLE_R2_SYNC": "true",
        }

    def reset(self) -> None:
        """Drop every bucket and object (moto's POST /moto-api/reset)."""
        with httpx.Client(trust_env=False, timeout=10.0) as http:
            http.post(f"{self.endpoint_url}/moto-api/reset").raise_for_status()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ContainerS3Server(S3Server):
    """The same server as the ``motoserver/moto`` container (testcontainers)."""

    IMAGE = "motoserver/moto"
    CONTAINER_PORT = 5000

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self._container: DockerContainer | None = None

    def start(self) -> None:
        if self._container is not None:
            return
        from testcontainers.core.container import DockerContainer

        container = DockerContainer(self.IMAGE).with_bind_ports(self.CONTAINER_PORT, self._port)
        self._container = container.start()
        self._host = container.get_container_host_ip()
        # Re-read: where the engine is reached through a gateway the port may differ.
        self._port = container.get_exposed_port(self.CONTAINER_PORT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers_http(self.endpoint_url):
            if time.monotonic() > deadline:
                out, err = container.get_logs()
                logs = (out + err).decode("utf-8", errors="replace")[-4000:]
                raise TimeoutError(f"moto container at {self.endpoint_url} is silent:\n{logs}")
            time.sleep(0.1)

    def stop(self) -> None:
        container, self._container = self._container, None
        self._admin = None
        if container is not None:
            container.stop()  # testcontainers' stop removes the container


def _answers_http(endpoint_url: str) -> bool:
    """True once the server answers any HTTP request (whatever the status)."""
    try:
        with httpx.Client(trust_env=False, timeout=1.0) as http:
            http.get(f"{endpoint_url}/moto-api/data.json")
    except httpx.HTTPError:
        return False
    return True
