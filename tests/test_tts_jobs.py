"""The whole speech path across real processes: `genstack-gateway serve` (POST /v1/jobs,
DELETE, the openai client's /v1/audio/speech) -> Redis queue tts.xtts -> `genstack-xtts
worker` -> the XTTS server (real coqui-tts engine, tiny checkpoint) -> OUTPUT_DIR ->
`genstack-uploader run` -> S3 (moto server). A job ends `succeeded` with a playable artifact
behind a presigned URL; a cancelled one ends `cancelled` with nothing uploaded."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import openai
import pytest

from genstack.core.jobs import JobStatus
from genstack.testing.audio import probe
from genstack.testing.plugin import StartServiceProcess
from genstack.testing.ports import free_port
from genstack.testing.process import console_script
from genstack.testing.redis_server import RedisServer
from genstack.testing.s3_server import S3Server
from genstack.testing.speech_worker import SpeechStack, start_speech_stack
from genstack.testing.waiting import wait_until
from genstack.xtts.tiny import build_tiny_checkpoint

NODE = "tts-e2e"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("xtts") / "model")


Stack = SpeechStack


@pytest.fixture
def stack(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    tiny_checkpoint: Path,
    redis_server: RedisServer,
    s3_server: S3Server,
    s3_bucket: str,
    service_process: StartServiceProcess,
) -> Stack:
    port = free_port()
    server = service_process(
        [console_script("genstack-xtts"), "serve"],
        env={
            "XTTS_HOST": "127.0.0.1",
            "XTTS_PORT": str(port),
            "XTTS_MODEL_DIR": str(tiny_checkpoint),
            "XTTS_DEVICE": "cpu",
            "TTS_VOICES_DIR": str(tmp_path / "voices"),
            "OUTPUT_DIR": str(tmp_path / "outputs"),
            "LOG_FORMAT": "text",
        },
        ready_url=f"http://127.0.0.1:{port}/readyz",
        name="xtts",
        cwd=tmp_path,
    )
    server.wait_ready(timeout=300)
    return start_speech_stack(
        service_process,
        request.addfinalizer,
        backend="xtts",
        server_url=f"http://127.0.0.1:{port}",
        redis_url=redis_server.url,
        tmp_path=tmp_path,
        s3_server=s3_server,
        bucket=s3_bucket,
        node=NODE,
    )


def test_a_tts_job_ends_succeeded_with_a_playable_artifact_in_the_bucket(stack: Stack) -> None:
    job = stack.submit(
        input="The stack works. Speech goes to the bucket.",
        voice="Claribel Dervla",
        response_format="mp3",
        seed=1,
    )
    wait_until(lambda: stack.job(job)["status"] in ("succeeded", "failed"), 300, "the job to end")
    done = stack.job(job)
    assert done["status"] == "succeeded", done["error"]
    assert done["progress"] == 1.0
    [artifact] = done["artifacts"]
    date = job.created_at.strftime("%Y-%m-%d")
    assert artifact["key"] == f"outputs/{date}/{job.id}/speech.mp3"
    body = httpx.get(artifact["url"]).content  # the presigned URL the gateway hands out
    assert len(body) == artifact["bytes"]
    assert hashlib.sha256(body).hexdigest() == artifact["sha256"]
    assert probe(body).duration_s > 0.1
    statuses = [e.data["status"] for e in stack.store.events(job.id) if e.type == "status"]
    assert statuses == ["queued", "running", "uploading", "succeeded"]


def test_a_cancelled_tts_job_ends_cancelled_with_nothing_uploaded(stack: Stack) -> None:
    text = " ".join(f"Sentence {i} keeps the model busy for a while." for i in range(150))
    job = stack.submit(input=text, voice="Ana Florence", response_format="flac")
    wait_until(lambda: stack.job(job)["status"] == "running", 120, "the job to run")
    with stack.http() as http:
        assert http.delete(f"/v1/jobs/{job.id}").status_code in (200, 202)
    wait_until(lambda: stack.job(job)["status"] == "cancelled", 60, "the job to stop")
    assert stack.store.require(job.id).status == JobStatus.CANCELLED
    listed = stack.s3.client().list_objects_v2(Bucket=stack.bucket)
    assert listed.get("KeyCount", 0) == 0


def test_openai_client_speaks_through_the_gateway_to_xtts(stack: Stack) -> None:
    client = openai.OpenAI(
        base_url=f"{stack.gateway.url}/v1", api_key=stack.gateway.api_key, max_retries=0
    )
    audio = client.audio.speech.create(
        model="xtts", voice="Claribel Dervla", input="Hello from XTTS.", response_format="wav"
    )
    assert probe(audio.content).duration_s > 0.1
    with client.audio.speech.with_streaming_response.create(
        model="xtts-v2",
        voice="Ana Florence",
        input="One sentence. And a second one.",
        response_format="mp3",
        extra_body={"language": "en", "seed": 3},
    ) as response:
        streamed = b"".join(response.iter_bytes(chunk_size=None))
    assert probe(streamed).duration_s > 0.1
    with pytest.raises(openai.NotFoundError):
        client.audio.speech.create(model="xtts", voice="nobody-by-that-name", input="hi")
