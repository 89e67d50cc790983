"""/v1/audio/speech against a real server process with the tone engine."""

from __future__ import annotations

import base64

import httpx
import pytest
from tts_helpers import ToneServer

from genstack.testing.audio import pcm_samples, probe, sse_events

CONTAINERS = {
    "mp3": ("mp3", "mp3float", "audio/mpeg"),
    "opus": ("ogg", "opus", "audio/ogg"),
    "aac": ("aac", "aac", "audio/aac"),
    "flac": ("flac", "flac", "audio/flac"),
    "wav": ("wav", "pcm_s16le", "audio/wav"),
}
TEXT = "Hello there. This is a test of the tone engine! Does it stream?"


def speech(server: ToneServer, **body: object) -> httpx.Response:
    payload = {"model": "tone", "input": TEXT, "voice": "alto", **body}
    return httpx.post(f"{server.url}/v1/audio/speech", json=payload, timeout=30)


def expected_seconds(text: str) -> float:
    letters = sum(c.isalnum() for c in text)
    spaces = sum(c.isspace() for c in text)
    other = len(text) - letters - spaces
    return letters * 0.06 + spaces * 0.04 + other * 0.15


@pytest.mark.parametrize("fmt", sorted(CONTAINERS))
@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_every_format_is_a_real_file_of_the_right_length(
    tone: ToneServer, fmt: str, stream: bool
) -> None:
    response = speech(tone, response_format=fmt, stream=stream, seed=1)
    assert response.status_code == 200, response.text
    container, codec, media_type = CONTAINERS[fmt]
    assert response.headers["content-type"] == media_type
    result = probe(response.content)
    assert (result.container, result.codec) == (container, codec)
    if fmt != "opus":  # Opus decoders always output 48 kHz
        assert result.rate == int(response.headers["x-sample-rate"])
    # Sentence splitting drops the spaces between sentences: two fewer.
    assert result.duration_s == pytest.approx(expected_seconds(TEXT) - 0.08, abs=0.12)
    assert float(abs(result.samples).max()) > 0.05  # not silence
    if stream:
        assert "content-length" not in response.headers  # sent as made
    else:
        assert int(response.headers["content-length"]) == len(response.content)


def test_pcm_is_raw_24khz_16_bit(tone: ToneServer) -> None:
    response = speech(tone, response_format="pcm")
    assert response.headers["content-type"] == "audio/pcm"
    assert response.headers["x-sample-rate"] == "24000"
    samples = pcm_samples(response.content)
    assert samples.size / 24_000 == pytest.approx(expected_seconds(TEXT) - 0.08, abs=0.05)


def test_the_same_seed_gives_the_same_audio_and_another_seed_does_not(tone: ToneServer) -> None:
    a = speech(tone, response_format="pcm", seed=7, temperature=1.0).content
    b = speech(tone, response_format="pcm", seed=7, temperature=1.0).content
    c = speech(tone, response_format="pcm", seed=8, temperature=1.0).content
    assert a == b
    assert a != c


@pytest.mark.parametrize("fmt", ["mp3", "opus", "wav"])
def test_sse_events_carry_base64_audio_that_joins_into_one_file(tone: ToneServer, fmt: str) -> None:
    response = speech(tone, response_format=fmt, stream_format="sse")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.content)
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) >= 3  # one per sentence at least
    assert events[-1]["type"] == "speech.audio.done"
    usage = events[-1]["usage"]
    assert isinstance(usage, dict)
    assert usage["input_tokens"] == len(TEXT)
    audio = b"".join(base64.b64decode(str(e["audio"])) for e in deltas)
    assert probe(audio).duration_s == pytest.approx(expected_seconds(TEXT) - 0.08, abs=0.12)


def test_speed_changes_the_duration(tone: ToneServer) -> None:
    normal = pcm_samples(speech(tone, response_format="pcm").content).size
    fast = pcm_samples(speech(tone, response_format="pcm", speed=2.0).content).size
    slow = pcm_samples(speech(tone, response_format="pcm", speed=0.5).content).size
    assert fast / normal == pytest.approx(0.5, rel=0.05)
    assert slow / normal == pytest.approx(2.0, rel=0.05)


def test_voice_as_an_object_and_openai_model_names_are_accepted(tone: ToneServer) -> None:
    assert speech(tone, voice={"id": "bass"}, response_format="pcm").status_code == 200
    for model in ("tts-1", "tts-1-hd", "gpt-4o-mini-tts"):
        assert speech(tone, model=model, response_format="pcm").status_code == 200


def test_engine_fields_are_validated_and_unknown_fields_ignored(tone: ToneServer) -> None:
    plain = speech(tone, response_format="pcm", seed=3).content
    assert speech(tone, response_format="pcm", seed=3, vibrato=0.8).content != plain
    assert speech(tone, response_format="pcm", seed=3, some_future_field=1).content == plain
    bad = speech(tone, vibrato=3)
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "vibrato"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"voice": "nobody"}, 404, "voice"),
        ({"voice": {"id": "nobody"}}, 404, "voice"),
        ({"voice": "../../etc/passwd"}, 400, "voice"),
        ({"voice": "/etc/passwd"}, 400, "voice"),
        ({"voice": "C:\\Windows\\win.ini"}, 400, "voice"),
        ({"model": "whisper-1"}, 404, "model"),
        ({"input": ""}, 400, "input"),
        ({"input": "   "}, 400, "input"),
        ({"speed": 0.1}, 400, "speed"),
        ({"speed": 4.5}, 400, "speed"),
        ({"response_format": "ogg"}, 400, "response_format"),
        ({"stream_format": "chunks"}, 400, "stream_format"),
        ({"language": "xx"}, 400, "language"),
        ({"temperature": -1}, 400, "temperature"),
        ({"input": "x" * 4097}, 413, "input"),
    ],
)
def test_bad_requests_get_a_clear_openai_error(
    tone: ToneServer, body: dict[str, object], status: int, param: str
) -> None:
    response = speech(tone, **body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["message"]
    # One dialect: OpenAI's type for every client error, the code says which.
    assert error["type"] == "invalid_request_error"
    assert error["code"]


def test_a_body_that_is_not_json_or_far_too_large_is_refused(tone: ToneServer) -> None:
    url = f"{tone.url}/v1/audio/speech"
    broken = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == "invalid_json"
    huge = httpx.post(url, content=b"x" * (2 * 1024 * 1024))
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "request_too_large"


def test_models_lists_the_engine(tone: ToneServer) -> None:
    data = httpx.get(f"{tone.url}/v1/models").json()["data"]
    assert [m["id"] for m in data] == ["tone"]


def test_metrics_count_requests_time_to_first_audio_and_real_time_factor(
    tone: ToneServer,
) -> None:
    speech(tone, response_format="mp3")
    text = httpx.get(f"{tone.url}/metrics").text
    assert 'genstack_tts_requests_total{route="/v1/audio/speech",status="200"}' in text
    assert "genstack_tts_time_to_first_audio_seconds_count" in text
    assert "genstack_tts_realtime_factor_count" in text
    assert "genstack_tts_queue_wait_seconds_count" in text
