"""The whole speech path for Chatterbox across real processes: `genstack-gateway serve`
(POST /v1/jobs, DELETE, the openai client's /v1/audio/speech) -> Redis queue tts.chatterbox
-> `genstack-chatterbox worker` -> the Chatterbox server (the real chatterbox-tts code on the
random-weight test checkpoint) -> OUTPUT_DIR -> `genstack-uploader run` -> S3 (moto server).

chatterbox's pins clash with the stack env's, so its server and worker run from its own env
(.venvs/chatterbox, `make env-chatterbox`); the model loads once for this module."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from genstack.core.jobs import JobStatus
from genstack.testing.audio import probe
from genstack.testing.chatterbox import cached_chatterbox_checkpoint, chatterbox_command
from genstack.testing.plugin import StartServiceProcess
from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess
from genstack.testing.redis_server import RedisServer
from genstack.testing.s3_server import S3Server
from genstack.testing.speech_worker import SpeechStack, start_speech_stack
from genstack.testing.waiting import wait_until

NODE = "chatterbox-e2e"
TIMEOUT = 600


@pytest.fixture(scope="module")
def chatterbox_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    command = chatterbox_command()
    checkpoint = cached_chatterbox_checkpoint("english", command=command)
    root = tmp_path_factory.mktemp("chatterbox")
    port = free_port()
    server = ServiceProcess(
        [str(command), "serve"],
        env={
            "CHATTERBOX_HOST": "127.0.0.1",
            "CHATTERBOX_PORT": str(port),
            "CHATTERBOX_MODEL_DIR": str(checkpoint),
            "CHATTERBOX_DEVICE": "cpu",
            "TTS_VOICES_DIR": str(root / "voices"),
            "TTS_QUEUE_TIMEOUT_S": "600",
            "OUTPUT_DIR": str(root / "outputs"),
            "LOG_FORMAT": "text",
        },
        log_path=root / "chatterbox.log",
        ready_url=f"http://127.0.0.1:{port}/readyz",
    )
    try:
        server.wait_ready(timeout=600)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


Stack = SpeechStack


@pytest.fixture
def stack(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    chatterbox_url: str,
    redis_server: RedisServer,
    s3_server: S3Server,
    s3_bucket: str,
    service_process: StartServiceProcess,
) -> Stack:
    """The worker, the uploader and the gateway (its default backends, chatterbox among
    them: no GATEWAY_ENABLED_*) around the module's server."""
    return start_speech_stack(
        service_process,
        request.addfinalizer,
        backend="chatterbox",
        server_url=chatterbox_url,
        redis_url=redis_server.url,
        tmp_path=tmp_path,
        s3_server=s3_server,
        bucket=s3_bucket,
        node=NODE,
        command=str(chatterbox_command()),
    )


def test_a_chatterbox_job_ends_succeeded_with_a_playable_artifact(stack: Stack) -> None:
    job = stack.submit(
        input="The stack works.",
        voice="default",
        response_format="mp3",
        seed=1,
        exaggeration=0.8,
        cfg_weight=0.4,
        temperature=0.7,
    )
    wait_until(
        lambda: stack.job(job)["status"] in ("succeeded", "failed"), TIMEOUT, "the job to end"
    )
    done = stack.job(job)
    assert done["status"] == "succeeded", done["error"]
    [artifact] = done["artifacts"]
    date = job.created_at.strftime("%Y-%m-%d")
    assert artifact["key"] == f"outputs/{date}/{job.id}/speech.mp3"
    body = httpx.get(artifact["url"]).content  # the presigned URL the gateway hands out
    assert hashlib.sha256(body).hexdigest() == artifact["sha256"]
    assert probe(body).duration_s > 0.2
    statuses = [e.data["status"] for e in stack.store.events(job.id) if e.type == "status"]
    assert statuses == ["queued", "running", "uploading", "succeeded"]


def test_a_cancelled_chatterbox_job_ends_cancelled_with_nothing_uploaded(stack: Stack) -> None:
    text = " ".join(f"Sentence {i} keeps the model busy for a while." for i in range(40))
    job = stack.submit(input=text, voice="default", response_format="flac")
    wait_until(lambda: stack.job(job)["status"] == "running", 120, "the job to run")
    with stack.http() as http:
        assert http.delete(f"/v1/jobs/{job.id}").status_code in (200, 202)
    wait_until(lambda: stack.job(job)["status"] == "cancelled", 400, "the job to stop")
    assert stack.store.require(job.id).status == JobStatus.CANCELLED
    listed = stack.s3.client().list_objects_v2(Bucket=stack.bucket)
    assert listed.get("KeyCount", 0) == 0


def test_the_openai_client_speaks_through_the_gateway_to_chatterbox(stack: Stack) -> None:
    client = openai.OpenAI(
        base_url=f"{stack.gateway.url}/v1",
        api_key=stack.gateway.api_key,
        max_retries=0,
        timeout=TIMEOUT,
    )
    # No response_format: OpenAI's mp3 (the gateway asks for it; the server's own is WAV).
    audio = client.audio.speech.create(model="chatterbox", voice="default", input="Hello.")
    assert probe(audio.content).codec == "mp3float"
    with pytest.raises(openai.NotFoundError):
        client.audio.speech.create(model="chatterbox", voice="nobody-by-that-name", input="hi")
