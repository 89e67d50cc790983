"""`genstack-xtts worker` as a real Celery worker process: Redis queue tts.xtts -> the XTTS
server over HTTP -> a file in OUTPUT_DIR/<job-id>/ -> handed to this host's uploader queue;
and its health port (/healthz, /readyz over Redis and the server, /metrics).
(The uploader itself finishes the job; tests/test_tts_jobs.py runs the whole chain.)"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from xtts_helpers import XttsServer

from genstack.core.contracts.xtts import QUEUE
from genstack.core.jobs import JobStatus
from genstack.testing.audio import probe
from genstack.testing.plugin import StartServiceProcess
from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess
from genstack.testing.redis_server import RedisServer
from genstack.testing.speech_worker import SpeechWorkerRig, readiness, start_speech_worker
from genstack.testing.waiting import wait_until

NODE = "xtts-test-node"


Rig = SpeechWorkerRig


def start_worker(
    service_process: StartServiceProcess, redis_url: str, tmp_path: Path, xtts_url: str
) -> tuple[ServiceProcess, str]:
    return start_speech_worker(
        service_process,
        backend="xtts",
        redis_url=redis_url,
        tmp_path=tmp_path,
        server_url=xtts_url,
        node=NODE,
    )


@pytest.fixture
def rig(
    redis_url: str, tmp_path: Path, xtts: XttsServer, service_process: StartServiceProcess
) -> Rig:
    worker, health = start_worker(service_process, redis_url, tmp_path, xtts.url)
    worker.wait_ready(60)  # /readyz: Redis, the consumer and the server all answer
    return Rig(redis_url, tmp_path / "outputs", worker, health, backend="xtts", queue=QUEUE)


def test_a_job_becomes_a_file_handed_to_the_uploader(rig: Rig) -> None:
    text = " ".join(f"Sentence {i} of the job." for i in range(20))  # two parts
    job = rig.submit(input=text, voice="Ana Florence", response_format="mp3", seed=4)
    wait_until(lambda: rig.status(job.id) == JobStatus.UPLOADING, 300, "the job to be handed over")
    done = rig.store.require(job.id)
    assert done.progress == 1.0
    path = rig.outputs / job.id / "speech.mp3"
    audio = probe(path.read_bytes())
    assert audio.codec == "mp3float"
    assert audio.duration_s > 1.0
    messages = [e.data.get("message") for e in rig.store.events(job.id) if e.type == "progress"]
    assert len(messages) >= 2 and messages[-1].startswith("part ")
    # The runner marks the job uploading before it queues the files, so wait for the queue too.
    wait_until(
        lambda: any(
            str(path.resolve()) in item for item in rig.store.redis.lrange(f"upload.{NODE}", 0, -1)
        ),
        10,
        "the file in the upload queue",
    )
    wait_until(lambda: jobs_counted(rig.health, "handed_over") == 1, 10, "the job in /metrics")


def test_text_as_an_alias_and_every_format(rig: Rig) -> None:
    jobs = {
        fmt: rig.submit(text="Short one.", voice="Claribel Dervla", response_format=fmt)
        for fmt in ("wav", "flac", "opus", "aac")
    }
    for fmt, job in jobs.items():
        wait_until(lambda job=job: rig.status(job.id) == JobStatus.UPLOADING, 300, f"{fmt} job")
        extension = "opus" if fmt == "opus" else fmt
        assert probe((rig.outputs / job.id / f"speech.{extension}").read_bytes()).duration_s > 0


def test_a_cancelled_job_stops_the_synthesis_and_ends_cancelled(rig: Rig, xtts: XttsServer) -> None:
    text = " ".join(f"This is sentence number {i} of a long job." for i in range(200))
    cancelled_before = cancelled_syntheses(xtts)
    job = rig.submit(input=text, voice="Ana Florence", response_format="wav")
    wait_until(lambda: rig.status(job.id) == JobStatus.RUNNING, 120, "the job to start")
    time.sleep(1.0)  # inside the first part: the worker is reading the server's stream
    rig.store.request_cancel(job.id)
    wait_until(lambda: rig.status(job.id) == JobStatus.CANCELLED, 60, "the job to be cancelled")
    assert not (rig.outputs / job.id).exists()
    assert rig.store.redis.llen(f"upload.{NODE}") == 0
    # The worker closed its request, so the server stopped that synthesis mid-part.
    wait_until(lambda: cancelled_syntheses(xtts) == cancelled_before + 1, 30, "the server to stop")


def jobs_counted(health: str, outcome: str) -> float:
    text = httpx.get(f"{health}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "genstack_jobs_total" and sample.labels == {
                "queue": "tts.xtts",
                "outcome": outcome,
            }:
                return float(sample.value)
    return 0.0


def test_readiness_follows_redis_away_and_back(rig: Rig, redis_server: RedisServer) -> None:
    assert httpx.get(f"{rig.health}/healthz", timeout=5).json() == {"status": "ok"}
    assert rig.readiness() == (200, {"redis": "ok", "worker": "ok", "xtts": "ok"})
    redis_server.stop()
    wait_until(lambda: rig.readiness()[0] == 503, 30, "/readyz to report Redis down")
    checks = rig.readiness()[1]
    assert checks["redis"].startswith("unreachable:"), checks
    assert checks["xtts"] == "ok"
    redis_server.start()
    wait_until(lambda: rig.readiness()[0] == 200, 60, "/readyz to see Redis back")


def test_a_worker_whose_server_does_not_answer_is_not_ready(
    redis_url: str, tmp_path: Path, service_process: StartServiceProcess
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    worker, health = start_worker(service_process, redis_url, tmp_path, dead)

    def consuming() -> bool:
        assert worker.is_running(), worker.log_tail()
        try:
            return readiness(health)[1].get("worker") == "ok"
        except httpx.HTTPError:  # the health port is not up yet
            return False

    wait_until(consuming, 60, "the worker's consumer to start")
    status, checks = readiness(health)
    assert status == 503
    assert checks["redis"] == "ok"
    assert checks["xtts"].startswith(f"{dead}/readyz unreachable:"), checks


def cancelled_syntheses(server: XttsServer) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith("genstack_tts_cancelled_total "):
            return float(line.split()[1])
    return 0.0


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"voice": "Ana Florence"}, "invalid_params"),
        ({"input": "Hi.", "voice": "nobody"}, "voice_not_found"),
        # XTTS's contract (the gateway's own check) refuses these before the server.
        ({"input": "Hi.", "voice": "../../etc/passwd"}, "invalid_params"),
        ({"input": "Hi.", "voice": "Ana Florence", "response_format": "ogg"}, "invalid_params"),
        ({"input": "Hi.", "voice": "Ana Florence", "speed": 10}, "invalid_params"),
        ({"input": "Hi.", "voice": "Ana Florence", "language": "xx"}, "invalid_params"),
        ({"input": "Hi.", "voice": "Ana Florence", "exaggeration": 0.5}, "invalid_params"),
    ],
)
def test_bad_jobs_fail_with_a_clear_code(rig: Rig, params: dict[str, object], code: str) -> None:
    job = rig.submit(**params)
    wait_until(lambda: rig.status(job.id) == JobStatus.FAILED, 120, "the job to fail")
    error = rig.store.require(job.id).error
    assert error is not None
    assert error.code == code, error
    assert error.message
