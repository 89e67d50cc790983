"""The whole speech path across real processes: `genstack-gateway serve` (POST /v1/jobs,
DELETE, the openai client's /v1/audio/speech) -> Redis queue tts.xtts -> `genstack-xtts
worker` -> the XTTS server (real coqui-tts engine, tiny checkpoint) -> OUTPUT_DIR ->
`genstack-uploader run` -> S3 (moto server). A job ends `succeeded` with a playable artifact
behind a presigned URL; a cancelled one ends `cancelled` with nothing uploaded."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from genstack.core.jobs import Job, JobStatus
from genstack.core.jobstore import JobStore
from genstack.core.redis_client import connect
from genstack.testing.audio import probe
from genstack.testing.plugin import StartServiceProcess
from genstack.testing.ports import free_port
from genstack.testing.process import console_script
from genstack.testing.redis_server import RedisServer
from genstack.testing.s3_server import S3Server
from genstack.testing.stack import RunningGateway, start_gateway
from genstack.testing.waiting import wait_until
from genstack.xtts.tiny import build_tiny_checkpoint

NODE = "tts-e2e"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("xtts") / "model")


@dataclass
class Stack:
    store: JobStore
    s3: S3Server
    bucket: str
    gateway: RunningGateway

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.gateway.url, headers=self.gateway.headers, timeout=60)

    def submit(self, **params: object) -> Job:
        with self.http() as http:
            answer = http.post(
                "/v1/jobs", json={"type": "tts", "backend": "xtts", "params": params}
            )
        assert answer.status_code in (200, 201, 202), answer.text
        return self.store.require(answer.json()["id"])

    def job(self, job: Job) -> dict[str, Any]:
        with self.http() as http:
            answer = http.get(f"/v1/jobs/{job.id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


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
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    common = {
        "REDIS_URL": redis_server.url,
        "NODE_ID": NODE,
        "OUTPUT_DIR": str(outputs),
        "LOG_FORMAT": "text",
        "CELERY_SOFT_SHUTDOWN_S": "2",
    }
    xtts_port, uploader_port, worker_port = free_port(), free_port(), free_port()
    server = service_process(
        [console_script("genstack-xtts"), "serve"],
        env={
            **common,
            "XTTS_HOST": "127.0.0.1",
            "XTTS_PORT": str(xtts_port),
            "XTTS_MODEL_DIR": str(tiny_checkpoint),
            "XTTS_DEVICE": "cpu",
            "TTS_VOICES_DIR": str(tmp_path / "voices"),
        },
        ready_url=f"http://127.0.0.1:{xtts_port}/readyz",
        name="xtts",
        cwd=tmp_path,
    )
    worker = service_process(
        [console_script("genstack-xtts"), "worker"],
        env={
            **common,
            "XTTS_URL": f"http://127.0.0.1:{xtts_port}",
            "WORKER_HEALTH_HOST": "127.0.0.1",
            "WORKER_HEALTH_PORT": str(worker_port),
        },
        ready_url=f"http://127.0.0.1:{worker_port}/readyz",
        name="xtts-worker",
        cwd=tmp_path,
    )
    uploader = service_process(
        [console_script("genstack-uploader"), "run"],
        env={
            **common,
            "STORAGE_DIR": str(tmp_path / "unused-local-storage"),
            "R2_ENDPOINT": s3_server.endpoint_url,
            "R2_BUCKET": s3_bucket,
            "R2_ACCESS_KEY_ID": s3_server.access_key,
            "R2_SECRET_ACCESS_KEY": s3_server.secret_key,
            "UPLOAD_METRICS_HOST": "127.0.0.1",
            "UPLOAD_METRICS_PORT": str(uploader_port),
        },
        ready_url=f"http://127.0.0.1:{uploader_port}/readyz",
        name="uploader",
        cwd=tmp_path,
    )
    uploader.wait_ready(timeout=60)
    server.wait_ready(timeout=300)
    worker.wait_ready(timeout=60)  # ready once the server is
    gateway = start_gateway(
        redis_server.url,
        tmp_path,
        env={
            "XTTS_URL": f"http://127.0.0.1:{xtts_port}",
            "ENABLE_R2_SYNC": "true",
            "R2_ENDPOINT": s3_server.endpoint_url,
            "R2_BUCKET": s3_bucket,
            "R2_ACCESS_KEY_ID": s3_server.access_key,
            "R2_SECRET_ACCESS_KEY": s3_server.secret_key,
        },
    )
    request.addfinalizer(gateway.stop)
    store = JobStore(connect(redis_server.url), ttl_s=600)
    return Stack(store=store, s3=s3_server, bucket=s3_bucket, gateway=gateway)


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
