"""The gateway in front of the real TTS services: genstack.tts's model server (its weightless
tone engine, `genstack-tts-tone serve`) as the xtts backend, `genstack-xtts worker` running
tts jobs against it, and the uploader. The official openai client speaks through the
gateway; a tts job goes from POST /v1/jobs to a playable artifact. The model server wants a
key (TTS_API_KEYS), as it should wherever its port is reachable: the gateway and the worker
send it, and a gateway without it says so instead of blaming the client's key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from genstack.testing.audio import probe
from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess, console_script
from genstack.testing.redis_server import RedisServer
from genstack.testing.sse import read_sse
from genstack.testing.stack import RunningGateway, start_gateway, start_uploader

# The model server's key, which the gateway and the worker send (never a client's key).
BACKEND_KEY = "backend-key-for-the-tts-servers"
BACKEND_AUTH = {"Authorization": f"Bearer {BACKEND_KEY}"}


@dataclass
class TtsStack:
    gateway: RunningGateway
    tone_url: str
    redis_url: str
    root: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TtsStack]:
    root = tmp_path_factory.mktemp("tts-stack")
    redis = RedisServer(root / "redis")
    redis.start()
    started: list[Any] = []
    try:
        port = free_port()
        tone = ServiceProcess(
            [console_script("genstack-tts-tone"), "serve", "--port", str(port)],
            env={
                "TTS_VOICES_DIR": str(root / "voices"),
                "TTS_API_KEYS": BACKEND_KEY,
                "LOG_FORMAT": "text",
            },
            log_path=root / "tone.log",
            ready_url=f"http://127.0.0.1:{port}/readyz",
            cwd=root,
        )
        started.append(tone)
        tone_url = f"http://127.0.0.1:{port}"
        common = {"REDIS_URL": redis.url, "NODE_ID": "test-node", "LOG_FORMAT": "text"}
        health_port = free_port()
        worker = ServiceProcess(
            [console_script("genstack-xtts"), "worker"],
            env={
                **common,
                "XTTS_URL": tone_url,
                "TTS_API_KEYS": BACKEND_KEY,
                "OUTPUT_DIR": str(root / "outputs"),
                "WORKER_HEALTH_HOST": "127.0.0.1",
                "WORKER_HEALTH_PORT": str(health_port),
            },
            log_path=root / "xtts-worker.log",
            ready_url=f"http://127.0.0.1:{health_port}/readyz",
            cwd=root,
        )
        started.append(worker)
        started.append(start_uploader(redis.url, root))
        tone.wait_ready(120)
        worker.wait_ready(60)
        gateway = start_gateway(
            redis.url, root, env={"XTTS_URL": tone_url, "TTS_API_KEYS": BACKEND_KEY}
        )
        started.append(gateway)
        yield TtsStack(gateway, tone_url, redis.url, root)
    finally:
        for process in reversed(started):
            process.stop()
        redis.close()


def first_voice(stack: TtsStack) -> str:
    listing = httpx.get(
        f"{stack.gateway.url}/v1/audio/voices", headers=stack.gateway.headers
    ).json()
    xtts = [v["id"] for v in listing["data"] if v["backend"] == "xtts"]
    assert xtts, listing
    return str(xtts[0])


def test_voices_come_from_the_real_server(stack: TtsStack) -> None:
    assert httpx.get(f"{stack.tone_url}/v1/audio/voices").status_code == 401
    direct = httpx.get(f"{stack.tone_url}/v1/audio/voices", headers=BACKEND_AUTH).json()
    listing = httpx.get(
        f"{stack.gateway.url}/v1/audio/voices", headers=stack.gateway.headers
    ).json()
    assert sorted(v["id"] for v in listing["data"] if v["backend"] == "xtts") == sorted(
        v["id"] for v in direct["data"]
    )
    status = {b["name"]: b for b in listing["backends"]}
    assert status["xtts"]["ready"] is True


def test_openai_speech_through_the_gateway(stack: TtsStack) -> None:
    client = openai.OpenAI(
        base_url=f"{stack.gateway.url}/v1", api_key=stack.gateway.api_key, max_retries=0
    )
    voice = first_voice(stack)
    audio = client.audio.speech.create(
        model="tts-1", voice=voice, input="Hello through the gateway.", response_format="wav"
    )
    assert audio.response.headers["content-type"].startswith("audio/")
    assert probe(audio.content).duration_s > 0.3
    chunks = []
    # (The tone server answers OpenAI's model names, not "xtts"; the body reaches it as sent.)
    with client.audio.speech.with_streaming_response.create(
        model="tts-1-hd",
        voice=voice,
        input="One sentence. And another one, streamed as it is made.",
        response_format="mp3",
    ) as response:
        chunks = list(response.iter_bytes(chunk_size=None))
    assert probe(b"".join(chunks)).duration_s > 0.3
    # The server's own errors come back as they are.
    with pytest.raises(openai.APIStatusError) as caught:
        client.audio.speech.create(model="tts-1", voice="no-such-voice", input="hi")
    assert 400 <= caught.value.status_code < 500


def test_a_tts_job_ends_with_a_playable_artifact(stack: TtsStack) -> None:
    voice = first_voice(stack)
    with httpx.Client(
        base_url=stack.gateway.url, headers=stack.gateway.headers, timeout=60
    ) as http:
        body = {
            "type": "tts",
            "params": {"input": "A job. Two sentences.", "voice": voice, "response_format": "mp3"},
        }
        job = http.post("/v1/jobs", json=body).json()
        with http.stream("GET", f"/v1/jobs/{job['id']}/events") as response:
            events = list(read_sse(response))
        statuses = [e.json()["status"] for e in events if e.event == "status"]
        assert statuses == ["queued", "running", "uploading", "succeeded"], json.dumps(
            [e.json() for e in events]
        )
        (artifact,) = http.get(f"/v1/jobs/{job['id']}").json()["artifacts"]
    assert artifact["key"].endswith(f"/{job['id']}/speech.mp3")
    audio = httpx.get(artifact["url"]).content
    assert len(audio) == artifact["bytes"]
    assert probe(audio).duration_s > 0.3


def test_a_gateway_without_the_backends_key_says_so(stack: TtsStack) -> None:
    """The client's key is right and the backend refuses the gateway: a 502 naming the
    setting, not the backend's 401 (which would tell the client its own key is wrong)."""
    keyless = start_gateway(
        stack.redis_url, stack.root, env={"XTTS_URL": stack.tone_url}, name="keyless-gateway"
    )
    try:
        answer = httpx.post(
            f"{keyless.url}/v1/audio/speech",
            json={"model": "tts-1", "voice": "alloy", "input": "hi"},
            headers=keyless.headers,
            timeout=30,
        )
        assert answer.status_code == 502, answer.text
        error = answer.json()["error"]
        assert error["code"] == "backend_auth_failed"
        assert error["type"] == "server_error"
        assert "TTS_API_KEYS" in error["message"]
        # With the key, the same request through the stack's gateway is spoken.
        spoken = httpx.post(
            f"{stack.gateway.url}/v1/audio/speech",
            json={"model": "tts-1", "voice": first_voice(stack), "input": "hi"},
            headers=stack.gateway.headers,
            timeout=60,
        )
        assert spoken.status_code == 200, spoken.text
    finally:
        keyless.stop()
