"""How the gateway serves: CORS only for configured origins, several processes, start-up
refusals."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from genstack.testing.process import console_script
from genstack.testing.redis_server import RedisServer
from genstack.testing.stack import start_gateway


def test_cors_only_for_configured_origins(module_redis: RedisServer, module_dir: Path) -> None:
    gateway = start_gateway(
        module_redis.url,
        module_dir,
        env={"GATEWAY_CORS_ORIGINS": "https://app.example"},
        name="gw-cors",
    )
    try:
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        allowed = httpx.options(
            f"{gateway.url}/v1/jobs", headers={"Origin": "https://app.example", **preflight}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.options(
            f"{gateway.url}/v1/jobs", headers={"Origin": "https://evil.example", **preflight}
        )
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers
        answer = httpx.get(
            f"{gateway.url}/v1/models",
            headers={**gateway.headers, "Origin": "https://app.example"},
        )
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
    finally:
        gateway.stop()


def test_no_cors_headers_without_configured_origins(
    module_redis: RedisServer, module_dir: Path
) -> None:
    gateway = start_gateway(module_redis.url, module_dir, name="gw-nocors")
    try:
        answer = httpx.get(
            f"{gateway.url}/v1/models",
            headers={**gateway.headers, "Origin": "https://app.example"},
        )
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers
    finally:
        gateway.stop()


def test_several_worker_processes(module_redis: RedisServer, module_dir: Path) -> None:
    gateway = start_gateway(
        module_redis.url,
        module_dir,
        env={"GATEWAY_WORKERS": "2", "LOG_FORMAT": "json"},
        name="gw-workers",
    )
    try:
        with httpx.Client(base_url=gateway.url, headers=gateway.headers) as http:
            for _ in range(6):
                response = http.post(
                    "/v1/jobs", json={"type": "tts", "params": {"input": "x", "voice": "a"}}
                )
                assert response.status_code == 201
        log = gateway.process.logs()
        assert '"msg": "gateway ready"' in log  # each process logs in the configured format
        assert '"request_id"' in log
    finally:
        gateway.stop()


def test_start_up_refuses_bad_configuration(tmp_path: Path) -> None:
    for env, message in (
        ({"GATEWAY_API_KEYS": ""}, "no API keys"),
        ({"GATEWAY_API_KEYS": "short"}, "16"),
        ({"GATEWAY_DEFAULT_TTS_BACKEND": "Not A Name"}, "gateway_default_tts_backend"),
        ({"GATEWAY_BACKENDS": '{"x": {"module": "nope", "queue": "q"}}'}, "cannot be imported"),
        ({"GATEWAY_WEBHOOK_SECRET": "whsec_c2hvcnQ="}, "16 bytes"),
        ({"ENABLE_R2_SYNC": "true"}, "R2_ENDPOINT"),
    ):
        result = subprocess.run(
            [console_script("genstack-gateway"), "serve"],
            env={"PATH": "/usr/bin:/bin", "GATEWAY_API_KEYS": "k" * 20, **env},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=False,
        )
        assert result.returncode == 2, (env, result.stderr)
        assert message in result.stderr, (env, result.stderr)
        assert "Traceback" not in result.stderr


def test_settings_command_masks_secrets(tmp_path: Path) -> None:
    result = subprocess.run(
        [console_script("genstack-gateway"), "settings"],
        env={
            "PATH": "/usr/bin:/bin",
            "GATEWAY_API_KEYS": "gs-very-secret-key-0123",
            "GATEWAY_WEBHOOK_SECRET": "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=True,
    )
    assert "gs-very-secret-key" not in result.stdout
    assert "MDEyMzQ1" not in result.stdout
    assert '"gateway_port": 8080' in result.stdout
