"""A TTS service's ``worker`` command as a real process (``genstack-xtts worker``,
``genstack-chatterbox worker``), and the gateway's side of its jobs: create one in Redis,
dispatch it to the service's queue, read its status and the worker's health port. Or the
whole job path around a running model server (:func:`start_speech_stack`): the worker, the
uploader into an S3 bucket and the gateway.

Needs genstack-core in the environment (imported by the tests that use it, not by the
pytest plugin)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from genstack.core.celery_app import create_celery_app
from genstack.core.job_task import dispatch_job
from genstack.core.jobs import Job, JobStatus, JobType
from genstack.core.jobstore import JobStore
from genstack.core.redis_client import connect
from genstack.testing.plugin import StartServiceProcess
from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess, console_script
from genstack.testing.s3_server import S3Server
from genstack.testing.stack import RunningGateway, start_gateway, start_uploader

__all__ = [
    "SpeechStack",
    "SpeechWorkerRig",
    "readiness",
    "start_speech_stack",
    "start_speech_worker",
]


def readiness(health: str) -> tuple[int, dict[str, str]]:
    """The worker's /readyz: its status code and checks."""
    response = httpx.get(f"{health}/readyz", timeout=10)
    return response.status_code, response.json()["checks"]


def start_speech_worker(
    service_process: StartServiceProcess,
    *,
    backend: str,
    redis_url: str,
    tmp_path: Path,
    server_url: str,
    node: str,
    command: str | None = None,
) -> tuple[ServiceProcess, str]:
    """``genstack-<backend> worker`` (``command`` when the service lives in another env)
    against the model server at ``server_url``, its health port on loopback, files under
    ``tmp_path/outputs``; returns it (not yet waited for) and its health port's URL."""
    port = free_port()
    health = f"http://127.0.0.1:{port}"
    worker = service_process(
        [command or console_script(f"genstack-{backend}"), "worker"],
        env={
            "REDIS_URL": redis_url,
            "NODE_ID": node,
            "OUTPUT_DIR": str(tmp_path / "outputs"),
            f"{backend.upper()}_URL": server_url,
            "WORKER_HEALTH_HOST": "127.0.0.1",
            "WORKER_HEALTH_PORT": str(port),
            "LOG_FORMAT": "text",
            "CELERY_SOFT_SHUTDOWN_S": "2",
        },
        ready_url=f"{health}/readyz",
        name=f"{backend}-worker",
        cwd=tmp_path,
    )
    return worker, health


class SpeechWorkerRig:
    """A running speech worker and the job store it serves."""

    def __init__(
        self,
        redis_url: str,
        outputs: Path,
        worker: ServiceProcess,
        health: str,
        *,
        backend: str,
        queue: str,
    ) -> None:
        self.store = JobStore(connect(redis_url), ttl_s=600)
        self.celery = create_celery_app("test-gateway", redis_url)
        self.outputs = outputs
        self.worker = worker
        self.health = health  # base URL of the worker's /healthz, /readyz, /metrics
        self.backend = backend
        self.queue = queue

    def submit(self, **params: object) -> Job:
        """A `tts` job with ``params``, as the gateway makes and dispatches one."""
        job = self.store.create(Job(type=JobType.TTS, backend=self.backend, params=params))
        dispatch_job(self.celery, job.id, self.queue)
        return job

    def status(self, job_id: str) -> JobStatus:
        return self.store.require(job_id).status

    def readiness(self) -> tuple[int, dict[str, str]]:
        return readiness(self.health)


@dataclass
class SpeechStack:
    """The gateway, the job store and the bucket of a running speech job path."""

    store: JobStore
    s3: S3Server
    bucket: str
    gateway: RunningGateway
    backend: str

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.gateway.url, headers=self.gateway.headers, timeout=60)

    def submit(self, **params: object) -> Job:
        """A `tts` job with ``params`` through the gateway's POST /v1/jobs."""
        with self.http() as http:
            answer = http.post(
                "/v1/jobs", json={"type": "tts", "backend": self.backend, "params": params}
            )
        assert answer.status_code in (200, 201, 202), answer.text
        return self.store.require(answer.json()["id"])

    def job(self, job: Job) -> dict[str, Any]:
        with self.http() as http:
            answer = http.get(f"/v1/jobs/{job.id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def start_speech_stack(
    service_process: StartServiceProcess,
    finalizer: Callable[[Callable[[], None]], None],
    *,
    backend: str,
    server_url: str,
    redis_url: str,
    tmp_path: Path,
    s3_server: S3Server,
    bucket: str,
    node: str,
    command: str | None = None,
) -> SpeechStack:
    """Around the model server at ``server_url``: ``genstack-<backend> worker``, the uploader
    into ``bucket`` and the gateway (its default backends), all ready; ``finalizer`` (a
    pytest request's addfinalizer) stops the uploader and the gateway."""
    r2 = s3_server.r2_env(bucket)
    uploader = start_uploader(
        redis_url,
        tmp_path,
        env={**r2, "NODE_ID": node, "STORAGE_DIR": str(tmp_path / "unused-local-storage")},
    )
    finalizer(uploader.stop)
    worker, _ = start_speech_worker(
        service_process,
        backend=backend,
        redis_url=redis_url,
        tmp_path=tmp_path,
        server_url=server_url,
        node=node,
        command=command,
    )
    worker.wait_ready(60)  # ready once the server answers too
    gateway = start_gateway(redis_url, tmp_path, env={**r2, f"{backend.upper()}_URL": server_url})
    finalizer(gateway.stop)
    store = JobStore(connect(redis_url), ttl_s=600)
    return SpeechStack(store=store, s3=s3_server, bucket=bucket, gateway=gateway, backend=backend)
