"""The worker runtime across real processes: a backend worker (genstack.testing.job_worker,
the real genstack.core.worker runtime) and the real uploader, over a real Redis, into a
real S3 server. What every backend (XTTS, Chatterbox, ComfyUI) inherits, its health port
included."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from genstack.core.celery_app import create_celery_app
from genstack.core.job_task import dispatch_job
from genstack.core.jobs import Job, JobStatus, JobType
from genstack.core.jobstore import JobStore
from genstack.core.redis_client import connect
from genstack.testing.plugin import StartServiceProcess
from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess, console_script
from genstack.testing.redis_server import RedisServer
from genstack.testing.s3_server import S3Server
from genstack.testing.stack import job_worker_argv
from genstack.testing.waiting import wait_until

QUEUE = "demo"


@dataclass
class Worker:
    process: ServiceProcess
    health: str  # base URL of its /healthz, /readyz, /metrics

    def readiness(self) -> tuple[int, dict[str, str]]:
        response = httpx.get(f"{self.health}/readyz", timeout=10)
        return response.status_code, response.json()["checks"]

    def metric(self, name: str, **labels: str) -> float:
        """A sample of /metrics (0 when absent: a labelled series appears when first used)."""
        text = httpx.get(f"{self.health}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0

    def kill(self) -> None:
        self.process.kill()

    def logs(self) -> str:
        return self.process.logs()


@dataclass
class Stack:
    store: JobStore
    app: Celery
    env: dict[str, str]
    start: StartServiceProcess
    s3: S3Server
    bucket: str

    def worker(self, *options: str, ready: bool = True) -> Worker:
        """A test job worker on queue "demo", ready (else only its health port up); its
        leases lapse after 2 s and its reaper looks every second, so a dead worker's job is
        taken over quickly."""
        port = free_port()
        argv = job_worker_argv([QUEUE], "--lease-s", "2", "--reap-interval-s", "1", *options)
        health = f"http://127.0.0.1:{port}"
        process = self.start(
            argv,
            env={**self.env, "WORKER_HEALTH_HOST": "127.0.0.1", "WORKER_HEALTH_PORT": str(port)},
            ready_url=f"{health}/readyz",
            name="job-worker",
        )
        if ready:
            process.wait_ready(60)
        else:
            wait_until(lambda: _answers(f"{health}/healthz"), 60, "the health port")
        return Worker(process, health)

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
        dispatch_job(self.app, job.id, QUEUE)
        return job

    def status(self, job: Job) -> JobStatus:
        return self.store.require(job.id).status


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


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
        f"outputs/{date}/{job.id}/speech-0.wav",
        f"outputs/{date}/{job.id}/speech-1.wav",
    ]
    client = stack.s3.client()
    for artifact in done.artifacts:
        body = client.get_object(Bucket=stack.bucket, Key=artifact.key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == artifact.sha256
        assert artifact.bytes == len(body)
        assert artifact.content_type in ("audio/wav", "audio/x-wav")


def test_failure_carries_code_and_message(stack: Stack) -> None:
    stack.worker()
    job = stack.submit(fail_code="unknown_voice", fail_message="voice 'zed' does not exist")
    wait_until(lambda: stack.status(job) == JobStatus.FAILED, 60, "the job to fail")
    error = stack.store.require(job.id).error
    assert error is not None
    assert (error.code, error.message) == ("unknown_voice", "voice 'zed' does not exist")


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
    running = stack.submit(steps=3, sleep_s=2)
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
    # Long enough to outlast the survivor's start-up (it is ready before the kill).
    job = stack.submit(files=2, steps=4, sleep_s=2.5)
    wait_until(lambda: stack.status(job) == JobStatus.RUNNING, 30, "the job to start")
    survivor = stack.worker()  # started after the job was taken: it idles
    assert stack.status(job) == JobStatus.RUNNING
    doomed.kill()
    wait_until(lambda: stack.status(job) == JobStatus.SUCCEEDED, 60, "the job to finish")
    assert len(stack.store.require(job.id).artifacts) == 2
    assert "dispatched again" in survivor.logs()


def test_the_worker_reports_health_readiness_and_job_metrics(stack: Stack) -> None:
    worker = stack.worker()
    assert httpx.get(f"{worker.health}/healthz", timeout=5).json() == {"status": "ok"}
    assert worker.readiness() == (200, {"redis": "ok", "worker": "ok"})
    stack.submit(files=1)
    stack.submit(busy_times=1)  # one retried delivery, then handed over
    stack.submit(fail_code="unknown_voice")

    def counted() -> tuple[float, ...]:
        return tuple(
            worker.metric("genstack_jobs_total", queue=QUEUE, outcome=outcome)
            for outcome in ("handed_over", "retried", "failed")
        )

    wait_until(lambda: counted() == (2, 1, 1), 60, "the jobs to be counted by outcome")
    assert worker.metric("genstack_job_duration_seconds_count", queue=QUEUE) == 4
    assert worker.metric("genstack_jobs_running", queue=QUEUE) == 0
    assert httpx.get(f"{worker.health}/nowhere", timeout=5).status_code == 404


def test_readiness_follows_redis_away_and_back(stack: Stack, redis_server: RedisServer) -> None:
    worker = stack.worker()
    redis_server.stop()
    wait_until(lambda: worker.readiness()[0] == 503, 30, "/readyz to report Redis down")
    asked = time.monotonic()
    status, checks = worker.readiness()
    assert time.monotonic() - asked < 3  # short timeouts: a probe never hangs on Redis
    assert status == 503
    assert checks["redis"].startswith("unreachable:"), checks
    assert checks["worker"] == "ok"
    assert httpx.get(f"{worker.health}/healthz", timeout=5).status_code == 200  # alive
    redis_server.start()
    wait_until(lambda: worker.readiness()[0] == 200, 60, "/readyz to see Redis back")
    assert worker.readiness()[1] == {"redis": "ok", "worker": "ok"}
    job = stack.submit(files=1)  # and the worker consumes again
    wait_until(lambda: stack.status(job) == JobStatus.UPLOADING, 60, "the job to run")


def test_readiness_names_a_backend_that_does_not_answer(stack: Stack) -> None:
    dead = f"http://127.0.0.1:{free_port()}/readyz"
    worker = stack.worker("--backend-url", dead, ready=False)
    wait_until(lambda: worker.readiness()[1]["worker"] == "ok", 60, "the consumer to start")
    status, checks = worker.readiness()
    assert status == 503
    assert checks["redis"] == "ok"
    assert checks["backend"].startswith(f"{dead} unreachable:"), checks
