"""The real XTTS engine under concurrency: no voice mixing, and a client that leaves
mid-stream frees the model for the next request."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from xtts_helpers import XttsServer, tone_wave

from genstack.tts.audio import encode_all


def test_eight_concurrent_requests_with_different_voices_match_their_solo_results(
    xtts: XttsServer,
) -> None:
    voices = ["Claribel Dervla", "Ana Florence"]
    for pitch in (110, 150, 190, 230, 270, 310):
        created = httpx.post(
            f"{xtts.url}/v1/audio/voices",
            files={"audio_sample": ("v.wav", encode_all(tone_wave(pitch, 3.0), "wav", 24_000))},
            data={"name": f"pitch {pitch}"},
        )
        assert created.status_code == 201
        voices.append(created.json()["id"])

    def request(i: int) -> bytes:
        response = httpx.post(
            f"{xtts.url}/v1/audio/speech",
            json={
                "input": f"Voice {i} talks.",
                "voice": voices[i],
                "seed": 40 + i,
                "response_format": "pcm",
            },
            timeout=300,
        )
        assert response.status_code == 200, response.text
        return response.content

    solo = [request(i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(request, range(8)))
    assert together == solo
    assert len(set(solo)) == 8  # eight different voices, eight different results


def test_a_disconnect_mid_stream_frees_the_model(start_xtts: Callable[..., XttsServer]) -> None:
    # No waiting allowed: while a synthesis runs, other requests get 503 at once.
    server = start_xtts(env={"TTS_MAX_QUEUE": "0"})
    long_text = " ".join(f"Sentence number {i} is here." for i in range(40))
    body = {
        "input": long_text,
        "voice": "Ana Florence",
        "response_format": "mp3",
        "stream_chunk_size": 5,
    }
    short = {"input": "Next.", "voice": "Ana Florence", "response_format": "wav"}
    with (
        httpx.Client(timeout=120) as client,
        client.stream("POST", f"{server.url}/v1/audio/speech", json=body) as response,
    ):
        assert response.status_code == 200
        assert next(response.iter_raw())
        blocked = httpx.post(f"{server.url}/v1/audio/speech", json=short, timeout=60)
        assert blocked.status_code == 503
        assert "retry-after" in blocked.headers
    left = time.monotonic()
    while True:
        after = httpx.post(f"{server.url}/v1/audio/speech", json=short, timeout=60)
        if after.status_code == 200 or time.monotonic() - left > 15:
            break
        time.sleep(0.1)
    assert after.status_code == 200
    # 40 sentences would keep the model busy far longer than one streamed chunk does.
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "genstack_tts_cancelled_total 1.0" in metrics
