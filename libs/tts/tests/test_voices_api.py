"""/v1/audio/voices against a real server process: upload, list, use, delete, limits."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from tts_helpers import ToneServer, tone_wave

from genstack.testing.audio import pcm_samples, probe
from genstack.tts.audio import encode_all


def upload(
    server: ToneServer,
    data: bytes,
    *,
    name: str | None = "Guest",
    field: str = "audio_sample",
    language: str | None = None,
) -> httpx.Response:
    form = {"name": name} if name is not None else {}
    if language is not None:
        form["language"] = language
    return httpx.post(
        f"{server.url}/v1/audio/voices",
        files={field: ("ref.bin", data, "application/octet-stream")},
        data=form,
        timeout=30,
    )


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * rate / samples.size)


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "opus", "aac"])
def test_uploaded_voice_is_listed_used_and_deleted(tone: ToneServer, fmt: str) -> None:
    created = upload(tone, encode_all(tone_wave(150, 3.0), fmt, 24_000), name=f"Low {fmt}")
    assert created.status_code == 201, created.text
    voice = created.json()
    assert voice["object"] == "audio.voice" and voice["name"] == f"Low {fmt}"
    assert voice["id"].startswith(f"low-{fmt}-")
    assert voice["duration_s"] == pytest.approx(3.0, abs=0.1)
    assert voice["language"] is None
    listed = httpx.get(f"{tone.url}/v1/audio/voices").json()["data"]
    assert {"alto", "bass", "soprano", voice["id"]} <= {v["id"] for v in listed}
    # The tone engine speaks at the voice's pitch: a 150 Hz reference gives a low voice.
    spoken = httpx.post(
        f"{tone.url}/v1/audio/speech",
        json={"input": "a", "voice": voice["id"], "response_format": "pcm"},
        timeout=30,  # the first use decodes and conditions the voice: slow on a busy machine
    )
    samples = pcm_samples(spoken.content)
    assert dominant_hz(samples[200:-200], 24_000) == pytest.approx(
        150 * (1 + 0.5 * 1 / 12), rel=0.08
    )
    sample = httpx.get(f"{tone.url}/v1/audio/voices/{voice['id']}/sample")
    assert probe(sample.content).duration_s == pytest.approx(3.0, abs=0.1)
    gone = httpx.delete(f"{tone.url}/v1/audio/voices/{voice['id']}")
    assert gone.json() == {"id": voice["id"], "object": "audio.voice.deleted", "deleted": True}
    again = httpx.post(f"{tone.url}/v1/audio/speech", json={"input": "a", "voice": voice["id"]})
    assert again.status_code == 404


def test_file_field_and_missing_name_work_too(tone: ToneServer) -> None:
    created = upload(tone, encode_all(tone_wave(200, 2.0), "wav", 24_000), name=None, field="file")
    assert created.status_code == 201
    assert created.json()["name"] == "ref.bin"


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"this is not audio at all" * 50, 400, "invalid_audio"),
        (b"%PDF-1.4\n" + os.urandom(4000), 400, "invalid_audio"),
        (encode_all(tone_wave(200, 0.3), "wav", 24_000), 400, "audio_too_short"),
        (encode_all(np.zeros(48_000, dtype=np.float32), "wav", 24_000), 400, "invalid_audio"),
        (encode_all(tone_wave(200, 61.0), "flac", 24_000), 400, "audio_too_long"),
    ],
    ids=["text", "pdf", "too-short", "silent", "too-long"],
)
def test_bad_uploads_are_refused_and_nothing_is_stored(
    tone: ToneServer, data: bytes, status: int, code: str
) -> None:
    before = sorted(p.name for p in tone.voices_dir.glob("*")) if tone.voices_dir.exists() else []
    response = upload(tone, data)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    after = sorted(p.name for p in tone.voices_dir.glob("*")) if tone.voices_dir.exists() else []
    assert after == before


def test_an_upload_over_the_size_limit_is_413(
    start_tone: Callable[..., ToneServer],
) -> None:
    server = start_tone(env={"TTS_MAX_VOICE_UPLOAD_MB": "0.5"})
    big = encode_all(tone_wave(200, 30.0), "wav", 24_000)  # 1.4 MB
    response = upload(server, big)
    assert response.status_code == 413
    assert "error" in response.json()
    assert not list(server.voices_dir.glob("*.wav")) if server.voices_dir.exists() else True


def test_prompt_voices_and_uploads_without_audio_are_refused(tone: ToneServer) -> None:
    no_file = httpx.post(f"{tone.url}/v1/audio/voices", data={"name": "x"})
    assert no_file.status_code == 400
    prompt = httpx.post(
        f"{tone.url}/v1/audio/voices",
        files={"audio_sample": ("a.wav", encode_all(tone_wave(200, 2.0), "wav", 24_000))},
        data={"type": "prompt"},
    )
    assert prompt.status_code == 400


@pytest.mark.parametrize(
    "voice_id",
    ["..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "..", "a%00b", "x" * 80, "bad%5Cname"],
)
def test_path_like_ids_never_reach_the_file_system(
    tone: ToneServer, voice_id: str, tmp_path: Path
) -> None:
    for method in ("GET", "DELETE"):
        response = httpx.request(method, f"{tone.url}/v1/audio/voices/{voice_id}")
        assert 400 <= response.status_code < 500, (method, response.status_code)
    sample = httpx.get(f"{tone.url}/v1/audio/voices/{voice_id}/sample")
    assert 400 <= sample.status_code < 500
    assert b"root:" not in sample.content


def test_builtin_voices_cannot_be_deleted(tone: ToneServer) -> None:
    response = httpx.delete(f"{tone.url}/v1/audio/voices/alto")
    assert response.status_code == 400
    assert httpx.get(f"{tone.url}/v1/audio/voices/alto").json()["type"] == "builtin"


def test_a_voice_file_replaced_on_disk_is_conditioned_again(tone: ToneServer) -> None:
    voice = upload(tone, encode_all(tone_wave(150, 2.0), "wav", 24_000)).json()
    body = {"input": "a", "voice": voice["id"], "response_format": "pcm"}
    low = pcm_samples(httpx.post(f"{tone.url}/v1/audio/speech", json=body).content)
    path = tone.voices_dir / f"{voice['id']}.wav"
    path.write_bytes(encode_all(tone_wave(300, 2.0), "wav", 24_000))
    high = pcm_samples(httpx.post(f"{tone.url}/v1/audio/speech", json=body).content)
    assert dominant_hz(high[200:-200], 24_000) > 1.8 * dominant_hz(low[200:-200], 24_000)


def test_a_chunked_upload_without_length_is_stopped_at_the_limit(
    start_tone: Callable[..., ToneServer],
) -> None:
    server = start_tone(env={"TTS_MAX_VOICE_UPLOAD_MB": "0.5"})
    boundary = "genstack-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="audio_sample"; '
        'filename="big.wav"\r\nContent-Type: audio/wav\r\n\r\n'
    ).encode()

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(40):  # 2.5 MB, never announced by a Content-Length
            yield b"\x00" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = httpx.post(
        f"{server.url}/v1/audio/voices",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_voice_speaks_its_own_language_unless_the_request_names_one(tone: ToneServer) -> None:
    created = upload(tone, encode_all(tone_wave(150, 3.0), "wav", 24_000), language="DE")
    assert created.status_code == 201, created.text
    voice = created.json()
    assert voice["language"] == "de"

    def pitch(**fields: str) -> float:
        body = {"input": "a" * 10, "voice": voice["id"], "response_format": "pcm", **fields}
        spoken = httpx.post(f"{tone.url}/v1/audio/speech", json=body, timeout=30)
        assert spoken.status_code == 200, spoken.text
        return dominant_hz(pcm_samples(spoken.content)[200:-200], 24_000)

    # The tone engine raises the pitch a tenth per language after English ("de" is second).
    # Ten letters: a sound long enough for the spectrum to resolve a few hertz.
    english, own = pitch(language="en"), pitch()
    assert own / english == pytest.approx(1.1, abs=0.03)
    assert pitch(language="de") == pytest.approx(own, rel=0.01)
    refused = upload(tone, encode_all(tone_wave(150, 3.0), "wav", 24_000), language="tlh")
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "language"
