"""The worker runtime across real processes: a backend worker (tests/support/demo_worker.py,
the real genstack.core.worker runtime) and the real uploader, over a real Redis, into a
real S3 server. What every backend (XTTS, Chatterbox, ComfyUI) inherits."""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from celery import Celery

from genstack.core.celery_app import create_celery_app
from genstack.core.jobs import Job, JobStatus, JobType
from genstack.core.jobstore import JobStore
from genstack.core.redis_client import connect
from genstack.core.worker import dispatch_job
from genstack.testing.plugin import StartServiceProcess
from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess, console_script
from genstack.testing.s3_server import S3Server
from genstack.testing.waiting import wait_until

DEMO_WORKER = Path(__file__).parent / "support" / "demo_worker.py"


@dataclass
class Stack:
    store: JobStore
    app: Celery
    env: dict[str, str]
    start: StartServiceProcess
    s3: S3Server
    bucket: str

    def worker(self) -> ServiceProcess:
        return self.start([sys.executable, str(DEMO_WORKER)], env=self.env, name="demo-worker")

    def uploader(self) -> ServiceProcess:
        port = free_port()
        process = self.start(
            [console_script("genstack-uploader"), "run"],
            env={**self.env, "UPLOAD_METRICS_PORT": str(port), "UPLOAD_METRICS_HOST": "127.0.0.1"},
            ready_url=f"http://127.0.0.1:{port}/readyz",
            name="uploader",
        )
        process.wait_ready(timeout=60)
        return process

    def submit(self, **params: object) -> Job:
        job = self.store.create(Job(type=JobType.TTS, backend="demo", params=params))
        dispatch_job(self.app, job.id, "demo")
        return job

    def status(self, job: Job) -> JobStatus:
        return self.store.require(job.id).status


@pytest.fixture
def stack(
    tmp_path: Path,
    redis_url: str,
    s3_server: S3Server,
    s3_bucket: str,
    service_process: StartServiceProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> Stack:
    monkeypatch.chdir(tmp_path)
    env = {
        "REDIS_URL": redis_url,
        "NODE_ID": "node-a",
        "OUTPUT_DIR": str(tmp_path / "outputs"),
        "R2_ENDPOINT": s3_server.endpoint_url,
        "R2_BUCKET": s3_bucket,
        "R2_ACCESS_KEY_ID": s3_server.access_key,
        "R2_SECRET_ACCESS_KEY": s3_server.secret_key,
        "UPLOAD_STABLE_S": "3600",  # only hand-overs upload here, not rescans
        "CELERY_SOFT_SHUTDOWN_S": "2",
        "LOG_FORMAT": "text",
    }
    (tmp_path / "outputs").mkdir()
    return Stack(
        JobStore(connect(redis_url)),
        create_celery_app("test-gateway", redis_url),
        env,
        service_process,
        s3_server,
        s3_bucket,
    )


def test_lifecycle_ends_succeeded_with_verified_artifacts(stack: Stack) -> None:
    stack.uploader()
    stack.worker()
    job = stack.submit(files=2)
    wait_until(lambda: stack.status(job) == JobStatus.SUCCEEDED, 60, "the job to succeed")
    done = stack.store.require(job.id)
    statuses = [e.data["status"] for e in stack.store.events(job.id) if e.type == "status"]
    assert statuses == ["queued", "running", "uploading", "succeeded"]
    assert done.progress == 1.0
    date = job.created_at.strftime("%Y-%m-%d")
    assert sorted(a.key for a in done.artifacts) == [
        f"outputs/{date}/{job.id}/out0.wav",
        f"outputs/{date}/{job.id}/out1.wav",
    ]
    client = stack.s3.client()
    for artifact in done.artifacts:
        body = client.get_object(Bucket=stack.bucket, Key=artifact.key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == artifact.sha256
        assert artifact.bytes == len(body)
        assert artifact.content_type in ("audio/wav", "audio/x-wav")


def test_failure_carries_code_and_message(stack: Stack) -> None:
    stack.worker()
    job = stack.submit(fail="unknown_voice")
    wait_until(lambda: stack.status(job) == JobStatus.FAILED, 60, "the job to fail")
    error = stack.store.require(job.id).error
    assert error is not None
    assert (error.code, error.message) == ("unknown_voice", "demo failure unknown_voice")


def test_busy_backend_is_retried_then_succeeds(stack: Stack) -> None:
    stack.uploader()
    stack.worker()
    job = stack.submit(busy_times=2)
    wait_until(lambda: stack.status(job) == JobStatus.SUCCEEDED, 60, "the job to succeed")


def test_cancel_queued_and_running(stack: Stack) -> None:
    queued = stack.submit(files=1)
    assert stack.store.request_cancel(queued.id).status == JobStatus.CANCELLED
    stack.uploader()
    stack.worker()
    running = stack.submit(files=3, sleep_s=2)
    wait_until(lambda: stack.status(running) == JobStatus.RUNNING, 30, "the job to start")
    time.sleep(0.3)
    asked = time.monotonic()
    stack.store.request_cancel(running.id)
    wait_until(lambda: stack.status(running) == JobStatus.CANCELLED, 10, "the job to stop")
    assert time.monotonic() - asked < 3  # polled between steps, not at the end
    after = stack.store.require(running.id)
    assert after.artifacts == []
    assert not (Path(stack.env["OUTPUT_DIR"]) / running.id).exists()
    # The queued one never ran: no running state in its history.
    statuses = [e.data.get("status") for e in stack.store.events(queued.id) if e.type == "status"]
    assert statuses == ["queued", "cancelled"]
    # And the worker goes on with the next job.
    nxt = stack.submit(files=1)
    wait_until(lambda: stack.status(nxt) == JobStatus.SUCCEEDED, 60, "the next job")


def test_worker_killed_mid_job_the_job_still_finishes(stack: Stack) -> None:
    """SIGKILL the worker running a job (a pod dying): Celery would redeliver the task only
    after its visibility timeout (hours); the lease lapses in seconds and the reaper of the
    surviving worker dispatches the job again, and it completes once."""
    stack.uploader()
    doomed = stack.worker()
    job = stack.submit(files=2, sleep_s=1.5)
    wait_until(lambda: stack.status(job) == JobStatus.RUNNING, 30, "the job to start")
    survivor = stack.worker()  # started after the job was taken: it idles
    time.sleep(0.5)
    doomed.kill()
    wait_until(lambda: stack.status(job) == JobStatus.SUCCEEDED, 60, "the job to finish")
    assert len(stack.store.require(job.id).artifacts) == 2
    assert "dispatched again" in survivor.logs()
