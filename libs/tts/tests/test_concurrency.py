"""Serialisation on the model thread, seen from clients: no voice mixing under
concurrency, a disconnect frees the model, a busy model answers 503 with Retry-After."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from tts_helpers import ToneServer, tone_wave

from genstack.tts.audio import encode_all

LONG_TEXT = " ".join(["This sentence takes a while to say."] * 12)


def metric(server: ToneServer, name: str) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_eight_concurrent_requests_with_different_voices_match_their_solo_results(
    start_tone: Callable[..., ToneServer],
) -> None:
    server = start_tone(char_delay_ms=2)
    voices = ["alto", "bass", "soprano"]
    for pitch in (130, 170, 260, 330, 390):
        created = httpx.post(
            f"{server.url}/v1/audio/voices",
            files={"audio_sample": ("v.wav", encode_all(tone_wave(pitch, 2.0), "wav", 24_000))},
            data={"name": f"p{pitch}"},
        )
        voices.append(created.json()["id"])

    def request(i: int) -> bytes:
        response = httpx.post(
            f"{server.url}/v1/audio/speech",
            json={
                "input": f"Request number {i} speaks. Its second sentence follows.",
                "voice": voices[i],
                "seed": 100 + i,
                "temperature": 1.0,
                "response_format": "flac",
            },
            timeout=60,
        )
        assert response.status_code == 200, response.text
        return response.content

    solo = [request(i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(request, range(8)))
    assert together == solo
    assert len(set(solo)) == 8


def test_a_client_that_disconnects_mid_stream_frees_the_model(
    start_tone: Callable[..., ToneServer],
) -> None:
    # No waiting allowed: while the long synthesis runs, any other request gets 503.
    server = start_tone(char_delay_ms=15, env={"TTS_MAX_QUEUE": "0"})
    body = {"input": LONG_TEXT, "voice": "alto", "response_format": "mp3"}
    started = time.monotonic()
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", f"{server.url}/v1/audio/speech", json=body) as response,
    ):
        assert response.status_code == 200
        first = next(response.iter_raw())
        assert first
        busy = httpx.post(f"{server.url}/v1/audio/speech", json={**body, "input": "hi"})
        assert busy.status_code == 503
        assert int(busy.headers["retry-after"]) >= 1
        assert busy.json()["error"]["code"] == "model_busy"
    # The whole text takes ~6.5 s of "GPU" time; the model is free long before that.
    deadline = time.monotonic() + 3
    while True:
        after = httpx.post(f"{server.url}/v1/audio/speech", json={**body, "input": "hi"})
        if after.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert after.status_code == 200
    assert time.monotonic() - started < 4
    assert metric(server, "genstack_tts_cancelled_total") == 1


def test_a_request_that_waits_past_the_queue_timeout_gets_503(
    start_tone: Callable[..., ToneServer],
) -> None:
    server = start_tone(char_delay_ms=10, env={"TTS_QUEUE_TIMEOUT_S": "0.5"})
    body = {"input": LONG_TEXT, "voice": "alto", "response_format": "pcm"}
    with ThreadPoolExecutor(1) as pool:
        long_one = pool.submit(httpx.post, f"{server.url}/v1/audio/speech", json=body, timeout=60)
        time.sleep(0.3)
        started = time.monotonic()
        late = httpx.post(f"{server.url}/v1/audio/speech", json={**body, "input": "late"})
        waited = time.monotonic() - started
        assert late.status_code == 503
        assert "retry-after" in late.headers
        assert waited == pytest.approx(0.5, abs=0.4)
        assert long_one.result().status_code == 200
    assert metric(server, "genstack_tts_busy_rejections_total") == 1
