"""`genstack-xtts serve` on a tiny checkpoint: the OpenAI speech API, every format, SSE,
the official openai client, and voice cloning from an uploaded reference."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from xtts_helpers import MAX_SENTENCE_S, XttsServer, tone_wave

from genstack.testing.audio import probe, sse_events
from genstack.testing.file_server import FileServer, add_hf_file
from genstack.testing.ports import free_port
from genstack.tts.audio import encode_all

TEXT = "Hello there. This is the tiny model. It speaks noise."  # three sentences
CONTAINERS = {
    "mp3": ("mp3", "mp3float"),
    "opus": ("ogg", "opus"),
    "aac": ("aac", "aac"),
    "flac": ("flac", "flac"),
    "wav": ("wav", "pcm_s16le"),
}


def speech(server: XttsServer, **body: object) -> httpx.Response:
    payload = {"model": "xtts", "input": TEXT, "voice": "Ana Florence", "seed": 3, **body}
    return httpx.post(f"{server.url}/v1/audio/speech", json=payload, timeout=120)


@pytest.mark.parametrize("fmt", sorted(CONTAINERS))
@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_every_format_decodes_with_a_sane_rate_and_duration(
    xtts: XttsServer, fmt: str, stream: bool
) -> None:
    response = speech(xtts, response_format=fmt, stream=stream)
    assert response.status_code == 200, response.text
    result = probe(response.content)
    assert (result.container, result.codec) == CONTAINERS[fmt]
    assert result.rate == (48_000 if fmt == "opus" else 24_000)
    assert 0.05 < result.duration_s <= 3 * MAX_SENTENCE_S + 0.1
    assert float(abs(result.samples).max()) > 0.0


def test_pcm_is_24khz_16_bit(xtts: XttsServer) -> None:
    response = speech(xtts, response_format="pcm")
    assert response.headers["x-sample-rate"] == "24000"
    assert len(response.content) % 2 == 0
    assert 0.05 < len(response.content) / 2 / 24_000 <= 3 * MAX_SENTENCE_S


def test_sse_events_are_well_formed(xtts: XttsServer) -> None:
    response = speech(xtts, response_format="opus", stream_format="sse")
    events = sse_events(response.content)
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"}
    assert events[-1]["type"] == "speech.audio.done"
    audio = b"".join(base64.b64decode(str(e["audio"])) for e in events[:-1])
    assert probe(audio).codec == "opus"


def test_the_same_seed_repeats_and_streamed_chunks_arrive_separately(xtts: XttsServer) -> None:
    first = speech(xtts, response_format="pcm", stream=False).content
    assert speech(xtts, response_format="pcm", stream=False).content == first
    with httpx.stream(
        "POST",
        f"{xtts.url}/v1/audio/speech",
        json={
            "input": TEXT,
            "voice": "Ana Florence",
            "response_format": "pcm",
            "stream_chunk_size": 5,
        },
        timeout=120,
    ) as response:
        pieces = [p for p in response.iter_raw() if p]
    assert len(pieces) >= 3


@pytest.fixture(scope="module")
def client(xtts: XttsServer) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{xtts.url}/v1", api_key="unused", max_retries=0, timeout=120) as c:
        yield c


def test_openai_client_create_stream_and_extra_body(client: OpenAI) -> None:
    made = client.audio.speech.create(
        model="xtts-v2", voice="Claribel Dervla", input="One. Two.", response_format="mp3"
    )
    assert probe(made.content).duration_s > 0.05
    with client.audio.speech.with_streaming_response.create(
        model="xtts", voice="Claribel Dervla", input="Streaming now.", response_format="wav"
    ) as streamed:
        audio = b"".join(streamed.iter_bytes())
    assert probe(audio).codec == "pcm_s16le"
    seeded = [
        client.audio.speech.create(
            model="xtts",
            voice="Claribel Dervla",
            input="Seeded.",
            response_format="pcm",
            extra_body={"seed": 9, "temperature": 0.5, "language": "de"},
        ).content
        for _ in range(2)
    ]
    assert seeded[0] == seeded[1]


def test_a_cloned_voice_from_an_upload_speaks(xtts: XttsServer) -> None:
    created = httpx.post(
        f"{xtts.url}/v1/audio/voices",
        files={"audio_sample": ("me.mp3", encode_all(tone_wave(140, 4.0), "mp3", 24_000))},
        data={"name": "Me"},
    )
    assert created.status_code == 201, created.text
    voice_id = created.json()["id"]
    spoken = speech(xtts, voice={"id": voice_id}, response_format="flac")
    assert spoken.status_code == 200, spoken.text
    assert probe(spoken.content).duration_s > 0.05
    assert httpx.delete(f"{xtts.url}/v1/audio/voices/{voice_id}").status_code == 200


def test_text_xtts_cannot_read_is_a_400_not_a_500(xtts: XttsServer) -> None:
    response = speech(xtts, input="Room 42.", language="hi")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "engine_rejected_input"
    assert "cannot read this text" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"voice": "nova"}, 404),
        ({"voice": "../../../etc/passwd"}, 400),
        ({"voice": "/etc/passwd.wav"}, 400),
        ({"input": "x" * 4097}, 413),
        ({"language": "tlh"}, 400),
        ({"stream_chunk_size": 1}, 400),
        ({"model": "chatterbox"}, 404),
    ],
)
def test_bad_requests(xtts: XttsServer, body: dict[str, object], status: int) -> None:
    response = speech(xtts, **body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]


def test_a_missing_checkpoint_is_reported_not_hidden(
    start_xtts: Callable[..., XttsServer], tmp_path: Path
) -> None:
    empty = tmp_path / "no-model"
    empty.mkdir()
    hub = f"http://127.0.0.1:{free_port()}"  # nothing listens: the download cannot happen
    server = start_xtts(
        env={
            "XTTS_MODEL_DIR": str(empty),
            "HF_ENDPOINT": hub,
            "PROVISION_RETRIES": "0",
            "PROVISION_PROGRESS": "off",
            "PROVISION_MIN_FREE_GB": "0",
        },
        wait=False,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            ready = httpx.get(f"{server.url}/readyz")
            if "failed" in ready.json()["checks"]["model"]:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the load failure was never reported"
        time.sleep(0.1)
    assert ready.status_code == 503
    reason = ready.json()["checks"]["model"]
    assert "missing: config.json, model.pth, vocab.json, speakers_xtts.pth" in reason
    assert "provisioning it failed" in reason
    speech = httpx.post(f"{server.url}/v1/audio/speech", json={"input": "Hi.", "voice": "x"})
    assert speech.status_code == 503
    assert speech.json()["error"]["code"] == "model_error"
    assert httpx.get(f"{server.url}/healthz").status_code == 200  # alive, not ready


def test_a_missing_checkpoint_is_provisioned_from_the_hub(
    start_xtts: Callable[..., XttsServer], tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """An empty XTTS_MODEL_DIR is filled through genstack-provision from a Hugging Face-like
    hub on loopback (the tiny checkpoint published as coqui/XTTS-v2), then served."""
    hub = FileServer(host="127.0.0.1").start()
    cdn = FileServer(host="127.0.0.2").start()
    try:
        for name in ("model.pth", "config.json", "vocab.json", "speakers_xtts.pth"):
            data = (tiny_checkpoint / name).read_bytes()
            add_hf_file(hub, cdn, "coqui/XTTS-v2", name, data, lfs=name.endswith(".pth"))
        model_dir = tmp_path / "provisioned"
        server = start_xtts(
            env={
                "XTTS_MODEL_DIR": str(model_dir),
                "HF_ENDPOINT": hub.url,
                "PROVISION_PROGRESS": "off",
                "PROVISION_MIN_FREE_GB": "0",
            }
        )
        for name in ("model.pth", "config.json", "vocab.json", "speakers_xtts.pth"):
            assert (model_dir / name).read_bytes() == (tiny_checkpoint / name).read_bytes()
        speech = httpx.post(
            f"{server.url}/v1/audio/speech",
            json={"model": "xtts", "input": "Hello there.", "voice": _any_voice(server)},
            timeout=120,
        )
        assert speech.status_code == 200, speech.text
        assert len(speech.content) > 1000
        assert "XTTS checkpoint provisioned" in server.process.logs()
    finally:
        hub.stop()
        cdn.stop()


def _any_voice(server: XttsServer) -> str:
    return str(httpx.get(f"{server.url}/v1/audio/voices").json()["data"][0]["id"])
