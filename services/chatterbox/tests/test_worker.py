"""`genstack-chatterbox worker` as a real Celery worker process: Redis queue tts.chatterbox ->
the Chatterbox server over HTTP -> a file in OUTPUT_DIR/<job-id>/ -> handed to this host's
uploader queue; cancellation; bad jobs; its health port.
(The uploader itself finishes the job; tests/test_chatterbox_stack.py runs the whole chain.)"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from chatterbox_helpers import ChatterboxServer

from genstack.core.contracts.chatterbox import QUEUE
from genstack.core.jobs import JobStatus
from genstack.testing.audio import probe
from genstack.testing.plugin import StartServiceProcess
from genstack.testing.speech_worker import SpeechWorkerRig, start_speech_worker
from genstack.testing.waiting import wait_until

NODE = "chatterbox-test-node"


Rig = SpeechWorkerRig


@pytest.fixture
def rig(
    redis_url: str,
    tmp_path: Path,
    chatterbox: ChatterboxServer,
    service_process: StartServiceProcess,
) -> Rig:
    worker, health = start_speech_worker(
        service_process,
        backend="chatterbox",
        redis_url=redis_url,
        tmp_path=tmp_path,
        server_url=chatterbox.url,
        node=NODE,
    )
    worker.wait_ready(60)  # /readyz: Redis, the consumer and the server all answer
    return Rig(redis_url, tmp_path / "outputs", worker, health, backend="chatterbox", queue=QUEUE)


def test_a_job_becomes_a_file_handed_to_the_uploader(rig: Rig) -> None:
    checks = httpx.get(f"{rig.health}/readyz", timeout=10).json()["checks"]
    assert checks == {"redis": "ok", "worker": "ok", "chatterbox": "ok"}
    job = rig.submit(
        input="Hello from the queue.",
        voice="default",
        response_format="mp3",
        seed=4,
        exaggeration=0.7,
        cfg_weight=0.3,
    )
    wait_until(lambda: rig.status(job.id) == JobStatus.UPLOADING, 600, "the job to be handed over")
    path = rig.outputs / job.id / "speech.mp3"
    audio = probe(path.read_bytes())
    assert audio.codec == "mp3float"
    assert audio.duration_s > 0.3
    # The runner marks the job uploading before it queues the files, so wait for the queue too.
    wait_until(
        lambda: any(
            str(path.resolve()) in item for item in rig.store.redis.lrange(f"upload.{NODE}", 0, -1)
        ),
        10,
        "the file in the upload queue",
    )


def test_a_cancelled_job_ends_cancelled(rig: Rig, chatterbox: ChatterboxServer) -> None:
    text = " ".join(f"This is sentence number {i} of a long job." for i in range(50))
    cancelled_before = cancelled_syntheses(chatterbox)
    job = rig.submit(input=text, voice="default", response_format="wav")
    wait_until(lambda: rig.status(job.id) == JobStatus.RUNNING, 120, "the job to start")
    time.sleep(1.0)  # inside the first sentence: the worker is reading the server's stream
    rig.store.request_cancel(job.id)
    # The worker reads the server's stream a sentence at a time (10-40 s each on 2 busy cores).
    wait_until(lambda: rig.status(job.id) == JobStatus.CANCELLED, 400, "the job to be cancelled")
    assert not (rig.outputs / job.id).exists()
    assert rig.store.redis.llen(f"upload.{NODE}") == 0
    # The worker closed its request: the server stops after the sentence it is making.
    wait_until(
        lambda: cancelled_syntheses(chatterbox) == cancelled_before + 1, 400, "the server to stop"
    )


def cancelled_syntheses(server: ChatterboxServer) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith("genstack_tts_cancelled_total "):
            return float(line.split()[1])
    return 0.0


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"input": "Hi.", "voice": "nobody"}, "voice_not_found"),
        ({"input": "Hi.", "voice": "default", "language": "fr"}, "unsupported_language"),
        ({"input": "Hi.", "voice": "../../etc/passwd"}, "invalid_params"),
        ({"input": "Hi.", "voice": "default", "exaggeration": 3}, "invalid_params"),
        ({"input": "Hi.", "voice": "default", "language": "tlh"}, "invalid_params"),
        ({"input": "Hi.", "voice": "default", "stream_chunk_size": 20}, "invalid_params"),
    ],
)
def test_bad_jobs_fail_with_a_clear_code(rig: Rig, params: dict[str, object], code: str) -> None:
    job = rig.submit(**params)
    wait_until(lambda: rig.status(job.id) == JobStatus.FAILED, 120, "the job to fail")
    error = rig.store.require(job.id).error
    assert error is not None
    assert error.code == code, error
    assert error.message
