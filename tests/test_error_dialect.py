"""One error dialect across the stack: the gateway and the TTS servers answer the same
mistake with the same status, OpenAI error ``type``, ``code``, ``param`` and set of keys, and
the TTS server's own errors reach a client of the gateway's /v1/audio/speech unchanged.

Real processes: `genstack-gateway serve` (with Redis) in front of `genstack-xtts serve` on
the tiny random checkpoint. The gateway does not pass a client's key on to its backends, so
the XTTS server behind it runs without keys; the answers to a missing or wrong key are
compared with the shared TTS server that has keys (`genstack-tts-tone`, the same genstack.tts
app with a weightless engine)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess, console_script
from genstack.testing.redis_server import RedisServer
from genstack.testing.stack import API_KEY, RunningGateway, start_gateway
from genstack.xtts.tiny import build_tiny_checkpoint

KEYS = {"Authorization": f"Bearer {API_KEY}"}
ERROR_KEYS = {"message", "type", "param", "code"}
SPEECH = {"model": "xtts", "input": "Hello there.", "voice": "Ana Florence"}


@dataclass
class Servers:
    gateway: RunningGateway
    xtts: str  # no keys: the gateway's backend
    keyed_tts: str  # TTS_API_KEYS set


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("dialect")
    checkpoint = build_tiny_checkpoint(root / "model")
    redis = RedisServer(root / "redis")
    redis.start()
    started: list[Any] = []
    try:
        xtts_port, tone_port = free_port(), free_port()
        xtts = ServiceProcess(
            [console_script("genstack-xtts"), "serve"],
            env={
                "XTTS_HOST": "127.0.0.1",
                "XTTS_PORT": str(xtts_port),
                "XTTS_MODEL_DIR": str(checkpoint),
                "XTTS_DEVICE": "cpu",
                "TTS_VOICES_DIR": str(root / "voices"),
                "OUTPUT_DIR": str(root / "outputs"),
                "LOG_FORMAT": "text",
            },
            log_path=root / "xtts.log",
            ready_url=f"http://127.0.0.1:{xtts_port}/readyz",
            cwd=root,
        )
        started.append(xtts)
        tone = ServiceProcess(
            [console_script("genstack-tts-tone"), "serve", "--port", str(tone_port)],
            env={
                "TTS_API_KEYS": API_KEY,
                "TTS_VOICES_DIR": str(root / "tone-voices"),
                "LOG_FORMAT": "text",
            },
            log_path=root / "tone.log",
            ready_url=f"http://127.0.0.1:{tone_port}/readyz",
            cwd=root,
        )
        started.append(tone)
        tone.wait_ready(60)
        xtts.wait_ready(300)
        xtts_url = f"http://127.0.0.1:{xtts_port}"
        gateway = start_gateway(redis.url, root, env={"XTTS_URL": xtts_url})
        started.append(gateway)
        yield Servers(gateway, xtts_url, f"http://127.0.0.1:{tone_port}")
    finally:
        for process in reversed(started):
            process.stop()
        redis.close()


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == ERROR_KEYS, error
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)


def same_answer(first: httpx.Response, second: httpx.Response) -> dict[str, Any]:
    """The two answers agree in all but the wording of the message."""
    assert first.status_code == second.status_code, (first.text, second.text)
    a, b = error_of(first), error_of(second)
    assert (a["type"], a["code"], a["param"]) == (b["type"], b["code"], b["param"]), (a, b)
    return a


def post(url: str, body: Any = None, *, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{url}/v1/audio/speech", json=body, headers=headers, timeout=60)


def test_no_key_and_a_wrong_key(servers: Servers) -> None:
    gateway, tts = servers.gateway.url, servers.keyed_tts
    for headers, code in (
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer x"}, "invalid_api_key"),
    ):
        on_gateway, on_tts = (
            post(gateway, SPEECH, headers=headers),
            post(tts, SPEECH, headers=headers),
        )
        error = same_answer(on_gateway, on_tts)
        assert on_gateway.status_code == 401
        assert (error["type"], error["code"]) == ("invalid_request_error", code)
        assert on_gateway.headers["www-authenticate"] == on_tts.headers["www-authenticate"]


def test_a_field_out_of_range(servers: Servers) -> None:
    body = {**SPEECH, "speed": 10}
    on_gateway = post(servers.gateway.url, body, headers=KEYS)  # the gateway checks speed
    on_xtts = post(servers.xtts, body)
    error = same_answer(on_gateway, on_xtts)
    assert on_gateway.status_code == 400
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "invalid_value",
        "speed",
    )


@pytest.mark.parametrize(
    ("change", "status", "code", "param"),
    [
        ({"voice": "nobody-by-that-name"}, 404, "voice_not_found", "voice"),
        ({"temperature": 99}, 400, "invalid_value", "temperature"),
        ({"language": "tlh"}, 400, "unsupported_language", "language"),
        ({"stream_chunk_size": 1}, 400, "invalid_value", "stream_chunk_size"),
    ],
    ids=["unknown-voice", "temperature", "language", "engine-field"],
)
def test_the_tts_servers_errors_pass_the_gateway_unchanged(
    servers: Servers, change: dict[str, Any], status: int, code: str, param: str
) -> None:
    """Values only the model server checks: its answer, through the gateway's proxy, is the
    answer the server gives directly, in the gateway's own dialect."""
    body = {**SPEECH, **change}
    direct = post(servers.xtts, body)
    proxied = post(servers.gateway.url, body, headers=KEYS)
    error = same_answer(direct, proxied)
    assert direct.status_code == status
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)


def test_an_unknown_model(servers: Servers) -> None:
    body = {**SPEECH, "model": "whisper-1"}
    error = same_answer(post(servers.gateway.url, body, headers=KEYS), post(servers.xtts, body))
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "model_not_found",
        "model",
    )


def test_a_body_over_the_limit(servers: Servers) -> None:
    huge = b'{"input": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    headers = {"content-type": "application/json"}
    on_gateway = httpx.post(
        f"{servers.gateway.url}/v1/audio/speech", content=huge, headers={**headers, **KEYS}
    )
    on_xtts = httpx.post(f"{servers.xtts}/v1/audio/speech", content=huge, headers=headers)
    error = same_answer(on_gateway, on_xtts)
    assert on_gateway.status_code == 413
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")


def test_bad_json(servers: Servers) -> None:
    headers = {"content-type": "application/json"}
    on_gateway = httpx.post(
        f"{servers.gateway.url}/v1/audio/speech", content=b"{nope", headers={**headers, **KEYS}
    )
    on_xtts = httpx.post(f"{servers.xtts}/v1/audio/speech", content=b"{nope", headers=headers)
    error = same_answer(on_gateway, on_xtts)
    assert (on_gateway.status_code, error["code"]) == (400, "invalid_json")


def test_an_unknown_route_and_a_wrong_method(servers: Servers) -> None:
    gateway, xtts = servers.gateway.url, servers.xtts
    error = same_answer(
        httpx.get(f"{gateway}/v1/nothing-here", headers=KEYS), httpx.get(f"{xtts}/v1/nothing-here")
    )
    assert (error["type"], error["code"]) == ("invalid_request_error", "not_found")
    error = same_answer(
        httpx.get(f"{gateway}/v1/audio/speech", headers=KEYS), httpx.get(f"{xtts}/v1/audio/speech")
    )
    assert (error["type"], error["code"]) == ("invalid_request_error", "method_not_allowed")


def test_request_ids_on_both(servers: Servers) -> None:
    headers = {"X-Request-Id": "dialect-1"}
    assert (
        httpx.get(f"{servers.gateway.url}/healthz", headers=headers).headers["x-request-id"]
        == httpx.get(f"{servers.xtts}/healthz", headers=headers).headers["x-request-id"]
        == "dialect-1"
    )
