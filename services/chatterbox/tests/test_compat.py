"""A client of chatterbox-tts-api (travisvn/chatterbox-tts-api 2.x): its documented requests,
reproduced with httpx, against this server on the test checkpoint."""

from __future__ import annotations

import httpx
import pytest
from chatterbox_helpers import MAX_SENTENCE_S, ChatterboxServer, tone_wave

from genstack.testing.audio import probe
from genstack.tts.audio import encode_all


def reference(seconds: float = 3.0, fmt: str = "wav") -> bytes:
    return encode_all(tone_wave(150, seconds), fmt, 24_000)


def test_speech_without_model_or_format_is_a_wav(chatterbox: ChatterboxServer) -> None:
    """Its README's curl: {"input": ..., "voice": "alloy"}; a WAV file comes back."""
    response = chatterbox.post("/v1/audio/speech", json={"input": "Hello.", "voice": "alloy"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    result = probe(response.content)
    assert (result.container, result.codec, result.rate) == ("wav", "pcm_s16le", 24_000)


def test_its_tts_alias_takes_its_fields(chatterbox: ChatterboxServer) -> None:
    body = {
        "input": "Hello again.",
        "exaggeration": 0.8,
        "cfg_weight": 0.3,
        "temperature": 0.9,
        "streaming_strategy": "sentence",  # its streaming knobs: accepted, not needed here
        "streaming_chunk_size": 120,
    }
    response = chatterbox.post("/tts", json=body)
    assert response.status_code == 200, response.text
    assert 0.1 < probe(response.content).duration_s <= MAX_SENTENCE_S + 0.1


def test_its_stream_route_sends_a_playable_wav(chatterbox: ChatterboxServer) -> None:
    with httpx.stream(
        "POST",
        f"{chatterbox.url}/v1/audio/speech/stream",
        json={"input": "Streamed.", "voice": "default"},
        timeout=300,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "audio/wav"
        data = b"".join(response.iter_raw())
    assert data[:4] == b"RIFF"
    assert probe(data).duration_s > 0.1


def test_speech_upload_clones_the_voice_file(chatterbox: ChatterboxServer) -> None:
    response = chatterbox.post(
        "/v1/audio/speech/upload",
        data={"input": "Cloned.", "exaggeration": "0.6", "temperature": "0.7"},
        files={"voice_file": ("my voice.mp3", reference(fmt="mp3"), "audio/mpeg")},
    )
    assert response.status_code == 200, response.text
    assert probe(response.content).codec == "pcm_s16le"


def test_its_voice_library_routes(chatterbox: ChatterboxServer) -> None:
    url = chatterbox.url
    created = httpx.post(
        f"{url}/voices",
        data={"voice_name": "narrator", "language": "en"},
        files={"voice_file": ("narrator.wav", reference(), "audio/wav")},
    )
    assert created.status_code == 201, created.text
    assert created.json()["message"] == "Voice uploaded successfully"
    assert created.json()["voice"]["name"] == "narrator"
    assert created.json()["voice"]["language"] == "en"
    again = httpx.post(
        f"{url}/v1/voices",
        data={"voice_name": "narrator"},
        files={"voice_file": ("narrator.wav", reference(), "audio/wav")},
    )
    assert again.status_code == 409
    listed = httpx.get(f"{url}/v1/voices").json()
    assert listed["count"] == len(listed["voices"]) >= 1
    assert "narrator" in {v["name"] for v in listed["voices"]}
    info = httpx.get(f"{url}/voices/narrator").json()["voice"]
    assert info["filename"] == "narrator.wav"
    assert "/" not in info["path"]  # no server paths
    download = httpx.get(f"{url}/voices/narrator/download")
    assert probe(download.content).duration_s == pytest.approx(3.0, abs=0.05)
    assert httpx.get(f"{url}/v1/audio/voices/narrator").json()["type"] == "audio_sample"
    deleted = httpx.delete(f"{url}/voices/narrator")
    assert deleted.json() == {"message": "Voice deleted successfully", "voice_name": "narrator"}
    assert httpx.get(f"{url}/voices/narrator").status_code == 404
    assert httpx.get(f"{url}/voices/default").json()["default_voice"] == "default"


def test_its_info_routes(chatterbox: ChatterboxServer) -> None:
    url = chatterbox.url
    assert httpx.get(f"{url}/languages").json() == {
        "languages": [{"code": "en", "name": "English"}],
        "count": 1,
        "model_type": "standard",
    }
    for path in ("/health", "/v1/health", "/status"):
        health = httpx.get(f"{url}{path}").json()
        assert (health["status"], health["model_loaded"], health["device"]) == (
            "healthy",
            True,
            "cpu",
        )
    assert httpx.get(f"{url}/ping").json()["status"] == "ok"
    assert httpx.get(f"{url}/models").json()["data"][0]["id"] == "chatterbox"


@pytest.mark.parametrize(
    "path", ["/v1/audio/speech/upload", "/audio/speech/stream/upload", "/voices"]
)
def test_uploads_that_are_not_audio_or_too_large(chatterbox: ChatterboxServer, path: str) -> None:
    form = {"input": "Hi.", "voice_name": "bad-upload"}
    not_audio = chatterbox.post(
        path, data=form, files={"voice_file": ("voice.wav", b"RIFF" + b"\x00" * 5000)}
    )
    assert not_audio.status_code == 400, not_audio.text
    assert not_audio.json()["error"]["param"] == "voice_file"
    big = reference(24.0)  # 1.1 MB of WAV; the server takes 1 MB
    too_large = chatterbox.post(path, data=form, files={"voice_file": ("v.wav", big)})
    assert too_large.status_code == 413, too_large.text
    short = chatterbox.post(path, data=form, files={"voice_file": ("v.wav", reference(0.3))})
    assert short.status_code == 400
    assert short.json()["error"]["code"] == "audio_too_short"
    assert httpx.get(f"{chatterbox.url}/voices/bad-upload").status_code == 404


def test_form_fields_are_checked_like_json_ones(chatterbox: ChatterboxServer) -> None:
    response = chatterbox.post(
        "/v1/audio/speech/upload",
        data={"input": "Hi.", "exaggeration": "9"},
        files={"voice_file": ("v.wav", reference())},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "exaggeration"
    empty = chatterbox.post("/v1/audio/speech/upload", data={"input": ""})
    assert empty.status_code == 400
    assert empty.json()["error"]["param"] == "input"
