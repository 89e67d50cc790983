"""A TTS service's ``worker`` command as a real process (``genstack-xtts worker``,
``genstack-chatterbox worker``), and the gateway's side of its jobs: create one in Redis,
dispatch it to the service's queue, read its status and the worker's health port.

Needs genstack-core in the environment (imported by the tests that use it, not by the
pytest plugin)."""

from __future__ import annotations

from pathlib import Path

import httpx

from genstack.core.celery_app import create_celery_app
from genstack.core.job_task import dispatch_job
from genstack.core.jobs import Job, JobStatus, JobType
from genstack.core.jobstore import JobStore
from genstack.core.redis_client import connect
from genstack.testing.plugin import StartServiceProcess
from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess, console_script

__all__ = ["SpeechWorkerRig", "readiness", "start_speech_worker"]


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
) -> tuple[ServiceProcess, str]:
    """``genstack-<backend> worker`` against the model server at ``server_url``, its health
    port on loopback, files under ``tmp_path/outputs``; returns it (not yet waited for) and
    its health port's URL."""
    port = free_port()
    health = f"http://127.0.0.1:{port}"
    worker = service_process(
        [console_script(f"genstack-{backend}"), "worker"],
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
