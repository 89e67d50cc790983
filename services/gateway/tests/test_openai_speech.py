"""The OpenAI-compatible speech, voices and models routes, driven by the official `openai`
client, through the gateway to a small real HTTP speech backend."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from genstack.testing.ports import free_port
from genstack.testing.redis_server import RedisServer
from genstack.testing.speech_backend import SpeechBackend
from genstack.testing.stack import RunningGateway, start_gateway

CHUNK_DELAY_S = 0.4
CHUNKS = 4


@pytest.fixture(scope="module")
def backend() -> Iterator[SpeechBackend]:
    with SpeechBackend(
        voices=["alice", "bob"], chunks=CHUNKS, chunk_bytes=4800, chunk_delay_s=CHUNK_DELAY_S
    ) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(
    module_redis: RedisServer, module_dir: Path, backend: SpeechBackend
) -> Iterator[RunningGateway]:
    running = start_gateway(
        module_redis.url,
        module_dir,
        env={
            "XTTS_URL": backend.url,
            "CHATTERBOX_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
            "GATEWAY_MAX_SPEECH_INPUT_CHARS": "100",
        },
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.api_key, max_retries=0)


def expected_audio(backend: SpeechBackend) -> bytes:
    with httpx.Client() as http:
        return http.post(
            f"{backend.url}/v1/audio/speech", json={"input": "x", "model": "xtts"}
        ).content


def test_speech_create_returns_the_backends_audio(
    client: openai.OpenAI, backend: SpeechBackend
) -> None:
    before = len(backend.requests)
    audio = client.audio.speech.create(
        model="xtts", voice="alice", input="Hello there", extra_body={"language": "de"}
    )
    assert audio.content == expected_audio(backend)
    assert audio.content.startswith(b"RIFF")
    assert audio.response.headers["content-type"] == "audio/wav"
    sent = backend.requests[before]
    # The body reaches the backend as sent, backend-specific fields included, and with
    # OpenAI's default format when the client named none (chatterbox's own default is WAV).
    assert sent.body == {
        "model": "xtts",
        "voice": "alice",
        "input": "Hello there",
        "language": "de",
        "response_format": "mp3",
    }
    assert sent.headers.get("x-request-id")


def test_streaming_passes_bytes_as_they_arrive(
    client: openai.OpenAI, backend: SpeechBackend
) -> None:
    started = time.monotonic()
    arrivals: list[float] = []
    received = b""
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="bob", input="Stream me", response_format="wav"
    ) as response:
        assert response.headers.get("x-genstack-backend") == "xtts"
        for chunk in response.iter_bytes(chunk_size=None):
            arrivals.append(time.monotonic() - started)
            received += chunk
    total = arrivals[-1]
    assert received == expected_audio(backend)
    # The backend spaces its pieces CHUNK_DELAY_S apart: a buffering proxy would deliver
    # everything at the end; a streaming one delivers the first piece at once.
    assert total >= (CHUNKS - 1) * CHUNK_DELAY_S * 0.9
    assert arrivals[0] < CHUNK_DELAY_S, arrivals
    assert len(arrivals) >= CHUNKS - 1


def test_backend_errors_keep_their_status_and_body(client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.audio.speech.create(model="xtts", voice="alice", input="error:422")
    assert caught.value.status_code == 422
    assert caught.value.code == "backend_says_no"
    assert "backend refused" in caught.value.message
    with pytest.raises(openai.InternalServerError) as server_error:
        client.audio.speech.create(model="xtts", voice="alice", input="error:500")
    assert server_error.value.status_code == 500


def test_unknown_models_and_unreachable_backends(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.audio.speech.create(model="tts-9000", voice="alice", input="hi")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.APIStatusError) as down:
        client.audio.speech.create(model="chatterbox", voice="alice", input="hi")
    assert down.value.status_code == 503
    assert down.value.code == "backend_unavailable"


def test_input_limits_and_bad_values(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as too_long:
        client.audio.speech.create(model="xtts", voice="alice", input="x" * 101)
    assert too_long.value.param == "input"
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(model="xtts", voice="../../etc/passwd", input="hi")
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(model="xtts", voice="alice", input="hi", speed=10)
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(model="xtts", voice="alice", input="")


def test_wrong_key_is_an_authentication_error(gateway: RunningGateway) -> None:
    wrong = openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key="gs-wrong-0123456789abcdef", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        wrong.audio.speech.create(model="xtts", voice="alice", input="hi")


def test_voices_are_merged_with_readiness(gateway: RunningGateway) -> None:
    listing = httpx.get(f"{gateway.url}/v1/audio/voices", headers=gateway.headers).json()
    assert [(v["id"], v["backend"]) for v in listing["data"]] == [
        ("alice", "xtts"),
        ("bob", "xtts"),
    ]
    status = {b["name"]: b for b in listing["backends"]}
    assert status["xtts"]["ready"] is True and status["xtts"]["voices"] == 2
    assert status["chatterbox"]["ready"] is False and status["chatterbox"]["error"]
    only = httpx.get(
        f"{gateway.url}/v1/audio/voices", params={"backend": "chatterbox"}, headers=gateway.headers
    ).json()
    assert only["data"] == [] and [b["name"] for b in only["backends"]] == ["chatterbox"]


def test_models_through_the_openai_client(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert {"xtts", "xtts-v2", "chatterbox", "tts-1", "tts-1-hd", "comfyui", "dall-e-3"} <= set(
        models
    )
    assert models["tts-1"].owned_by == "genstack:xtts"
    assert "comfyui/video" in models and "comfyui/workflow" in models
    assert client.models.retrieve("xtts-v2").id == "xtts-v2"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-17")
