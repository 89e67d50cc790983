"""`genstack-chatterbox serve` on the test checkpoint (the real chatterbox-tts code on random
weights, loaded through from_local): OpenAI's speech API in every format, streamed and
not, seeds, Chatterbox's own fields, the official openai client, voice cloning, bad input."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from chatterbox_helpers import (
    MAX_SENTENCE_S,
    TIMEOUT,
    ChatterboxServer,
    start_chatterbox_server,
    tone_wave,
)
from openai import OpenAI

from genstack.testing.audio import pcm_samples, probe, sse_events
from genstack.testing.ports import free_port
from genstack.tts.audio import encode_all

TEXT = "Hello there."
CONTAINERS = {
    "mp3": ("mp3", "mp3float"),
    "opus": ("ogg", "opus"),
    "aac": ("aac", "aac"),
    "flac": ("flac", "flac"),
    "wav": ("wav", "pcm_s16le"),
}


def speech(server: ChatterboxServer, **body: object) -> httpx.Response:
    payload = {"model": "chatterbox", "input": TEXT, "voice": "default", "seed": 3, **body}
    return server.post("/v1/audio/speech", json=payload)


@pytest.mark.parametrize("fmt", [*sorted(CONTAINERS), "pcm"])
@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_every_format_decodes(chatterbox: ChatterboxServer, fmt: str, stream: bool) -> None:
    response = speech(chatterbox, response_format=fmt, stream=stream)
    assert response.status_code == 200, response.text
    if fmt == "pcm":
        assert response.headers["x-sample-rate"] == "24000"
        samples = pcm_samples(response.content)
        assert 0.1 < samples.size / 24_000 <= MAX_SENTENCE_S
        assert float(abs(samples).max()) > 0.0
        return
    result = probe(response.content)
    assert (result.container, result.codec) == CONTAINERS[fmt]
    assert result.rate == (48_000 if fmt == "opus" else 24_000)
    assert 0.1 < result.duration_s <= MAX_SENTENCE_S + 0.1
    assert float(abs(result.samples).max()) > 0.0


@pytest.fixture(scope="module")
def seeded(chatterbox: ChatterboxServer) -> bytes:
    """PCM of TEXT in the default voice with seed 5 and default settings."""
    response = speech(chatterbox, response_format="pcm", stream=False, seed=5)
    assert response.status_code == 200, response.text
    return response.content


def test_the_same_seed_voice_and_text_give_the_same_audio(
    chatterbox: ChatterboxServer, seeded: bytes
) -> None:
    again = speech(chatterbox, response_format="pcm", stream=False, seed=5)
    assert again.content == seeded
    other = speech(chatterbox, response_format="pcm", stream=False, seed=6)
    assert other.status_code == 200
    assert other.content != seeded


@pytest.mark.parametrize(
    "fields",
    [{"exaggeration": 2.0}, {"cfg_weight": 0}, {"temperature": 0.3}],
    ids=["exaggeration", "cfg_weight", "temperature"],
)
def test_chatterbox_fields_reach_the_model(
    chatterbox: ChatterboxServer, seeded: bytes, fields: dict[str, float]
) -> None:
    """Same seed, voice and text; one field changed: different audio. (cfg_weight 0, which
    chatterbox-tts 0.1.7 itself crashes on, runs with negligible guidance.)"""
    response = speech(chatterbox, response_format="pcm", stream=False, seed=5, **fields)
    assert response.status_code == 200, response.text
    assert response.content != seeded
    assert pcm_samples(response.content).size > 0


def test_sse_events_carry_the_audio(chatterbox: ChatterboxServer) -> None:
    response = speech(chatterbox, response_format="mp3", stream_format="sse")
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.content)
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"}
    assert events[-1]["type"] == "speech.audio.done"
    audio = b"".join(base64.b64decode(str(e["audio"])) for e in events[:-1])
    assert probe(audio).codec == "mp3float"


@pytest.fixture(scope="module")
def client(chatterbox: ChatterboxServer) -> Iterator[OpenAI]:
    with OpenAI(
        base_url=f"{chatterbox.url}/v1", api_key="unused", max_retries=0, timeout=TIMEOUT
    ) as c:
        yield c


def test_the_openai_client_speaks_streams_and_lists(client: OpenAI) -> None:
    """OpenAI's voice names speak in the default voice; no response_format: WAV, as
    chatterbox-tts-api answers (the gateway asks for OpenAI's mp3 itself)."""
    made = client.audio.speech.create(model="chatterbox", voice="alloy", input="One.")
    assert probe(made.content).codec == "pcm_s16le"
    with client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="default",
        input="Streaming now.",
        response_format="opus",
        extra_body={"seed": 9, "exaggeration": 0.7},
    ) as streamed:
        audio = b"".join(streamed.iter_bytes())
    assert probe(audio).codec == "opus"
    assert [m.id for m in client.models.list()] == ["chatterbox", "chatterbox-english"]


def test_voices_list_the_builtin_default(chatterbox: ChatterboxServer) -> None:
    listed = httpx.get(f"{chatterbox.url}/v1/audio/voices").json()["data"]
    assert {"id": "default", "object": "audio.voice", "name": "default", "type": "builtin"} in (
        listed
    )


def test_a_cloned_voice_from_an_upload_speaks(chatterbox: ChatterboxServer) -> None:
    created = httpx.post(
        f"{chatterbox.url}/v1/audio/voices",
        files={"audio_sample": ("me.mp3", encode_all(tone_wave(140, 3.0), "mp3", 24_000))},
        data={"name": "Me"},
    )
    assert created.status_code == 201, created.text
    voice_id = created.json()["id"]
    cloned = speech(chatterbox, voice={"id": voice_id}, response_format="pcm", stream=False)
    assert cloned.status_code == 200, cloned.text
    default = speech(chatterbox, response_format="pcm", stream=False)
    assert cloned.content != default.content  # the same seed: only the voice differs
    assert httpx.delete(f"{chatterbox.url}/v1/audio/voices/{voice_id}").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"voice": "nobody"}, 404, "voice"),
        ({"voice": "../../../etc/passwd"}, 400, "voice"),
        ({"input": "x" * 4097}, 413, "input"),
        ({"language": "fr"}, 400, "language"),
        ({"exaggeration": 5}, 400, "exaggeration"),
        ({"cfg_weight": -0.5}, 400, "cfg_weight"),
        ({"temperature": 0}, 400, "temperature"),
        ({"model": "xtts"}, 404, "model"),
    ],
)
def test_bad_requests_are_4xx_naming_the_field(
    chatterbox: ChatterboxServer, body: dict[str, object], status: int, param: str
) -> None:
    response = speech(chatterbox, **body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    assert error["param"] == param


def test_a_missing_checkpoint_is_reported_not_hidden(tmp_path: Path) -> None:
    empty = tmp_path / "no-model"
    empty.mkdir()
    hub = f"http://127.0.0.1:{free_port()}"  # nothing listens: the download cannot happen
    server = start_chatterbox_server(
        tmp_path,
        empty,
        env={
            "HF_ENDPOINT": hub,
            "PROVISION_RETRIES": "0",
            "PROVISION_PROGRESS": "off",
            "PROVISION_MIN_FREE_GB": "0",
        },
        name="missing",
        wait=False,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                ready = httpx.get(f"{server.url}/readyz")
                if "failed" in ready.json()["checks"]["model"]:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the load failure was never reported"
            time.sleep(0.2)
        assert ready.status_code == 503
        reason = ready.json()["checks"]["model"]
        assert "t3_cfg.safetensors" in reason
        assert "provisioning it failed" in reason
        answer = httpx.post(f"{server.url}/v1/audio/speech", json={"input": "Hi.", "voice": "x"})
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "model_error"
        health = httpx.get(f"{server.url}/health").json()  # chatterbox-tts-api's, always 200
        assert health["status"] == "error"
    finally:
        server.process.stop()
