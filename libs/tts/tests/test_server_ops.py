"""Health, readiness while the model loads, bearer auth and CORS, on real processes."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from tts_helpers import ToneServer

SPEECH = {"model": "tone", "input": "Hi.", "voice": "alto", "response_format": "wav"}


def test_ready_only_once_the_model_is_loaded(start_tone: Callable[..., ToneServer]) -> None:
    server = start_tone(load_delay_s=3, wait=False)
    deadline = time.monotonic() + 20
    while True:  # the process answers health checks while the model loads
        try:
            health = httpx.get(f"{server.url}/healthz")
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert health.json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"model": "loading", "model_thread": "ok"}
    early = httpx.post(f"{server.url}/v1/audio/speech", json=SPEECH)
    assert early.status_code == 503  # not 404: the built-in voice is not known yet
    assert early.json()["error"]["code"] == "model_loading"
    assert early.headers["retry-after"] == "5"
    server.process.wait_ready(timeout=20)
    assert httpx.post(f"{server.url}/v1/audio/speech", json=SPEECH).status_code == 200
    assert "genstack_tts_model_ready" in httpx.get(f"{server.url}/metrics").text


def test_bearer_auth_guards_everything_but_health(start_tone: Callable[..., ToneServer]) -> None:
    server = start_tone(env={"TTS_API_KEYS": "key-one, key-two"})
    url = f"{server.url}/v1/audio/speech"
    missing = httpx.post(url, json=SPEECH)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.post(url, json=SPEECH, headers={"Authorization": "Bearer key-three"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    for key in ("key-one", "key-two"):
        ok = httpx.post(url, json=SPEECH, headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200
    assert httpx.get(f"{server.url}/v1/audio/voices").status_code == 401
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{server.url}{path}").status_code == 200
    log = server.process.logs()
    assert "key-one" not in log and "key-two" not in log


def test_cors_allows_configured_origins_only(start_tone: Callable[..., ToneServer]) -> None:
    server = start_tone(env={"TTS_CORS_ORIGINS": "http://st.example:8000"})
    preflight = httpx.options(
        f"{server.url}/v1/audio/speech",
        headers={
            "Origin": "http://st.example:8000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://st.example:8000"
    answer = httpx.post(
        f"{server.url}/v1/audio/speech", json=SPEECH, headers={"Origin": "http://st.example:8000"}
    )
    assert answer.headers["access-control-allow-origin"] == "http://st.example:8000"
    other = httpx.post(
        f"{server.url}/v1/audio/speech", json=SPEECH, headers={"Origin": "http://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers


def test_sillytavern_default_origin_is_allowed_out_of_the_box(tone: ToneServer) -> None:
    answer = httpx.get(f"{tone.url}/v1/audio/voices", headers={"Origin": "http://localhost:8000"})
    assert answer.headers["access-control-allow-origin"] == "http://localhost:8000"


def test_sigterm_stops_the_server_cleanly(start_tone: Callable[..., ToneServer]) -> None:
    server = start_tone()
    server.process.terminate()
    # uvicorn re-raises the signal once it has shut down gracefully.
    assert server.process.wait(timeout=15) in (0, -15)
    assert "Application shutdown complete" in server.process.logs()
