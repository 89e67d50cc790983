"""GatewaySettings: lists from the environment, key rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from genstack.gateway.settings import GatewaySettings


def test_comma_lists_and_keys_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# operators\nfile-key-0123456789abcdef\n\n")
    monkeypatch.setenv("GATEWAY_API_KEYS", "env-key-0123456789abcdef, env-key-2-0123456789abc")
    monkeypatch.setenv("GATEWAY_API_KEYS_FILE", str(keys_file))
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", "https://a.example,https://b.example")
    monkeypatch.setenv("GATEWAY_WEBHOOK_ALLOW_NETWORKS", "10.0.0.0/8")
    settings = GatewaySettings()
    assert settings.api_keys() == [
        "env-key-0123456789abcdef",
        "env-key-2-0123456789abc",
        "file-key-0123456789abcdef",
    ]
    assert settings.gateway_cors_origins == ["https://a.example", "https://b.example"]
    assert "env-key" not in settings.model_dump_json()  # secrets stay masked


def test_short_keys_and_bad_networks_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_API_KEYS", "short")
    with pytest.raises(ValidationError, match="16"):
        GatewaySettings()
    monkeypatch.setenv("GATEWAY_API_KEYS", "long-enough-key-0123")
    monkeypatch.setenv("GATEWAY_WEBHOOK_ALLOW_NETWORKS", "not-a-network")
    with pytest.raises(ValidationError):
        GatewaySettings()


def test_short_keys_in_the_file_are_refused(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("tiny\n")
    with pytest.raises(ValueError, match="16"):
        GatewaySettings(gateway_api_keys_file=keys_file).api_keys()


def test_backends_come_as_json_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_API_KEYS", "long-enough-key-0123")
    monkeypatch.setenv(
        "GATEWAY_BACKENDS",
        '{"xtts": {"module": "xtts", "queue": "tts.xtts.eu", "url": "http://10.1.2.3:8020"}}',
    )
    configs = GatewaySettings().backend_configs()
    assert list(configs) == ["xtts"]
    assert configs["xtts"].queue == "tts.xtts.eu"
    assert configs["xtts"].url == "http://10.1.2.3:8020"
