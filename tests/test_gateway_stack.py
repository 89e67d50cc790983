"""The gateway, a real job worker (genstack.core's runtime on a Celery worker process) and the
real uploader, on one real Redis, with local storage: jobs from submission to verified
artifacts, followed over SSE, notified by webhook, fetched by signed link; OpenAI's
images.generate on the same path."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from standardwebhooks.webhooks import Webhook

from genstack.testing.process import ServiceProcess
from genstack.testing.redis_server import RedisServer
from genstack.testing.sse import SseEvent, read_sse
from genstack.testing.stack import (
    RunningGateway,
    start_gateway,
    start_job_worker,
    start_uploader,
)
from genstack.testing.webhook_receiver import Receiver

SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
BACKENDS = {
    "xtts": {"module": "xtts", "queue": "tts.xtts", "models": ["xtts"]},
    "comfyui": {"module": "comfyui", "queue": "comfyui", "models": ["comfyui"]},
    # A backend the tests script (genstack.testing.gateway_backend): configuration plus one
    # small module, as every backend is.
    "scripted": {"module": "genstack.testing.gateway_backend", "queue": "test.scripted"},
}


@dataclass
class Stack:
    gateway: RunningGateway
    worker: ServiceProcess
    uploader: ServiceProcess
    receiver: Receiver
    storage: Path

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.gateway.url, headers=self.gateway.headers, timeout=30)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    redis = RedisServer(root / "redis")
    redis.start()
    receiver = Receiver()
    started: list[Any] = []
    try:
        uploader = start_uploader(redis.url, root)
        started.append(uploader)
        worker = start_job_worker(
            redis.url, root, ["tts.xtts", "comfyui", "test.scripted"], concurrency=4
        )
        started.append(worker)
        gateway = start_gateway(
            redis.url,
            root,
            env={
                "GATEWAY_BACKENDS": json.dumps(BACKENDS),
                "GATEWAY_WEBHOOK_SECRET": SECRET,
                "GATEWAY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
                "GATEWAY_WEBHOOK_RETRY_BASE_S": "0.2",
                "GATEWAY_IMAGE_WAIT_S": "60",
            },
        )
        started.append(gateway)
        yield Stack(gateway, worker, uploader, receiver, root / "storage")
    finally:
        for process in reversed(started):
            process.stop()
        receiver.stop()
        redis.close()


def follow(stack: Stack, job_id: str) -> list[SseEvent]:
    with stack.http() as http, http.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        return list(read_sse(response))


def submit(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    with stack.http() as http:
        response = http.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_tts_job_runs_to_verified_artifacts(stack: Stack) -> None:
    job = submit(
        stack,
        {
            "type": "tts",
            "params": {"input": "Hello from the gateway", "voice": "alice"},
            "webhook_url": stack.receiver.url("/lifecycle"),
        },
    )
    assert job["backend"] == "xtts" and job["status"] == "queued"
    events = follow(stack, job["id"])
    statuses = [e.json()["status"] for e in events if e.event == "status"]
    assert statuses == ["queued", "running", "uploading", "succeeded"]
    kinds = [e.event for e in events]
    assert kinds.index("progress") > kinds.index("status")  # progress after running
    assert kinds.count("artifact") == 1 and kinds[-1] == "status"
    ids = [e.id for e in events]
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in (i or "0-0").split("-")))

    with stack.http() as http:
        done = http.get(f"/v1/jobs/{job['id']}").json()
    assert done["status"] == "succeeded" and done["progress"] == 1.0 and done["error"] is None
    (artifact,) = done["artifacts"]
    assert artifact["content_type"].startswith("audio/")
    assert artifact["key"].endswith(f"/{job['id']}/speech-0.wav")
    assert artifact["key"].startswith("outputs/")
    # The signed link works without an API key, and gives the verified bytes.
    link = artifact["url"]
    assert "/v1/files/" in link and "signature=" in link and "expires=" in link
    audio = httpx.get(link)
    assert audio.status_code == 200 and audio.content.startswith(b"RIFF")
    assert hashlib.sha256(audio.content).hexdigest() == artifact["sha256"]
    assert len(audio.content) == artifact["bytes"]
    tampered = link.replace("speech-0.wav", "speech-1.wav")
    assert httpx.get(tampered).status_code == 403
    unsigned = link.split("?")[0]
    assert httpx.get(unsigned).status_code == 401
    assert httpx.get(unsigned, headers=stack.gateway.headers).content == audio.content

    (delivery,) = stack.receiver.wait("/lifecycle", 1)
    payload = Webhook(SECRET).verify(delivery.body, delivery.headers)
    assert payload["type"] == "job.succeeded"
    assert payload["data"]["id"] == job["id"]
    assert [a["sha256"] for a in payload["data"]["artifacts"]] == [artifact["sha256"]]


def test_a_failing_job_carries_its_error_code_and_message(stack: Stack) -> None:
    job = submit(
        stack,
        {
            "type": "video",
            "backend": "scripted",
            "params": {"fail_code": "out_of_memory", "fail_message": "CUDA out of memory"},
            "webhook_url": stack.receiver.url("/failed"),
        },
    )
    events = follow(stack, job["id"])
    final = events[-1].json()
    assert final["status"] == "failed"
    assert final["error"] == {"code": "out_of_memory", "message": "CUDA out of memory"}
    with stack.http() as http:
        failed = http.get(f"/v1/jobs/{job['id']}").json()
    assert failed["error"] == {"code": "out_of_memory", "message": "CUDA out of memory"}
    assert failed["artifacts"] == []
    (delivery,) = stack.receiver.wait("/failed", 1)
    payload = Webhook(SECRET).verify(delivery.body, delivery.headers)
    assert payload["type"] == "job.failed" and payload["data"]["error"]["code"] == "out_of_memory"


def test_cancel_a_running_job(stack: Stack) -> None:
    job = submit(
        stack, {"type": "video", "backend": "scripted", "params": {"steps": 3, "sleep_s": 20}}
    )
    with stack.http() as http:
        deadline = time.monotonic() + 20
        while http.get(f"/v1/jobs/{job['id']}").json()["status"] != "running":
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.1)
        asked = time.monotonic()
        answer = http.delete(f"/v1/jobs/{job['id']}").json()
        assert answer["status"] == "running"  # signalled; the worker stops it
    events = follow(stack, job["id"])
    took = time.monotonic() - asked
    assert events[-1].json()["status"] == "cancelled"
    assert "cancel_requested" in [e.event for e in events]
    assert took < 10, f"the worker took {took:.1f} s to stop"
    with stack.http() as http:
        assert http.get(f"/v1/jobs/{job['id']}").json()["artifacts"] == []


def test_several_files_become_several_artifacts(stack: Stack) -> None:
    job = submit(stack, {"type": "workflow", "backend": "scripted", "params": {"files": 3}})
    assert follow(stack, job["id"])[-1].json()["status"] == "succeeded"
    with stack.http() as http:
        done = http.get(f"/v1/jobs/{job['id']}").json()
    keys = sorted(a["key"].rsplit("/", 1)[1] for a in done["artifacts"])
    assert keys == ["output-0.txt", "output-1.txt", "output-2.txt"]
    for artifact in done["artifacts"]:
        assert httpx.get(artifact["url"]).content == f"{job['id']} {artifact['key'][-5]}".encode()


def test_openai_images_generate(stack: Stack) -> None:
    client = openai.OpenAI(
        base_url=f"{stack.gateway.url}/v1", api_key=stack.gateway.api_key, max_retries=0
    )
    result = client.images.generate(prompt="a lighthouse at dusk", n=2, size="512x512")
    assert len(result.data) == 2
    for image in result.data:
        assert image.url is not None and image.revised_prompt == "a lighthouse at dusk"
        png = httpx.get(image.url)
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG\r\n\x1a\n")
    encoded = client.images.generate(
        prompt="a lighthouse at dawn", model="dall-e-3", response_format="b64_json"
    )
    (only,) = encoded.data
    assert only.b64_json is not None
    assert base64.b64decode(only.b64_json).startswith(b"\x89PNG\r\n\x1a\n")
    # The job behind it is an ordinary image job, listed with the rest.
    with stack.http() as http:
        recent = http.get("/v1/jobs", params={"limit": 5}).json()["data"]
    images = [j for j in recent if j["type"] == "image"]
    # No size: the template's own default (the job leaves width unset).
    assert "width" not in images[0]["params"] and images[1]["params"]["width"] == 512
    assert images[1]["params"]["n"] == 2
    with pytest.raises(openai.BadRequestError):
        client.images.generate(prompt="odd size", size="1000x1001")
    with pytest.raises(openai.NotFoundError):
        client.images.generate(prompt="x", model="midjourney")
