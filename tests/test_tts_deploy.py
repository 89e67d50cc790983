"""The xtts services in compose.yaml and their image fit the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from genstack.xtts.settings import XttsSettings
from genstack.xtts.worker import QUEUE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return dict(loaded["services"])


def test_the_server_gets_a_gpu_its_volumes_and_a_loopback_port(services: dict[str, Any]) -> None:
    xtts = services["xtts"]
    assert xtts["command"] == ["serve"]
    [device] = xtts["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert {"models:/data/models", "voices:/data/voices", "outputs:/data/outputs"} <= set(
        xtts["volumes"]
    )
    assert xtts["ports"] == ["${XTTS_BIND:-127.0.0.1}:${XTTS_PUBLISH_PORT:-8020}:8020"]
    assert xtts["environment"]["XTTS_PORT"] == str(XttsSettings().xtts_port)


def test_the_worker_runs_the_same_image_against_the_server(services: dict[str, Any]) -> None:
    worker, server = services["xtts-worker"], services["xtts"]
    assert worker["image"] == server["image"]
    assert worker["command"] == ["worker"]
    assert worker["environment"]["XTTS_URL"] == "http://xtts:8020"
    assert "outputs:/data/outputs" in worker["volumes"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "deploy" not in worker  # CPU only
    assert QUEUE == "tts.xtts"


def test_the_image_serves_on_the_port_its_health_check_probes(services: dict[str, Any]) -> None:
    build = services["xtts"]["build"]
    assert build["dockerfile"] == "docker/torch-service.Dockerfile"
    assert build["args"] == {"PACKAGE": "genstack-xtts", "PORT": str(XttsSettings().xtts_port)}
    text = (ROOT / build["dockerfile"]).read_text()
    final = text[text.rfind("\nFROM ") :]
    assert "pytorch/pytorch:2.6.0-cuda12.4" in text
    assert re.search(r"^USER 10001:10001$", final, re.M)
    assert "EXPOSE ${PORT}" in final
    assert "GENSTACK_HEALTH_URL=http://127.0.0.1:${PORT}${HEALTH_PATH}" in final
    assert re.search(r"^ARG HEALTH_PATH=/healthz$", final, re.M)
    # The entrypoint is the package's console script, linked under one name.
    assert re.search(r'^ENTRYPOINT \["genstack-service"\]$', final, re.M)
    assert 'ln -s "/opt/venv/bin/${PACKAGE}" /usr/local/bin/genstack-service' in final
