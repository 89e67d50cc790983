"""The comfyui services in compose.yaml fit the code: the server gets a GPU, the shared
volumes and a loopback port; the worker runs the same image against it; the gateway serves
the backend they make."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from genstack.comfyui.settings import ComfyUISettings
from genstack.core.contracts.comfyui import QUEUE
from genstack.core.jobs import JobType
from genstack.gateway.backends import build_registry
from genstack.gateway.settings import GatewaySettings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return dict(loaded["services"])


def test_the_server_gets_a_gpu_the_shared_volumes_and_a_loopback_port(
    services: dict[str, Any],
) -> None:
    comfyui = services["comfyui"]
    assert comfyui["command"] == ["start"]
    assert comfyui["build"] == {
        "context": ".",
        "dockerfile": "services/comfyui/Dockerfile",
        "args": {"PACKAGE": "genstack-comfyui"},
    }
    [device] = comfyui["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    # The models the uploader never sees, the outputs it uploads (the same volume as its).
    assert {"models:/data/models", "outputs:/data/outputs"} <= set(comfyui["volumes"])
    assert "outputs:/data/outputs" in services["uploader"]["volumes"]
    port = ComfyUISettings().comfyui_port
    assert comfyui["environment"]["COMFYUI_PORT"] == str(port)
    assert comfyui["environment"]["COMFYUI_LISTEN"] == "0.0.0.0"
    assert comfyui["ports"] == [
        f"${{COMFYUI_BIND:-127.0.0.1}}:${{COMFYUI_PUBLISH_PORT:-{port}}}:{port}"
    ]
    probe = " ".join(comfyui["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/system_stats" in probe
    assert "stop_grace_period" in comfyui


def test_the_worker_runs_the_same_image_against_the_server(services: dict[str, Any]) -> None:
    worker, server = services["comfyui-worker"], services["comfyui"]
    assert worker["image"] == server["image"]
    assert worker["command"] == ["worker"]
    assert worker["environment"]["COMFYUI_URL"] == "http://comfyui:8188"
    assert "outputs:/data/outputs" in worker["volumes"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "deploy" not in worker  # CPU only
    health_port = worker["environment"]["WORKER_HEALTH_PORT"]
    assert f"http://127.0.0.1:{health_port}/readyz" in " ".join(worker["healthcheck"]["test"])
    # The image's own HEALTHCHECK probes GENSTACK_HEALTH_URL: the worker's, not ComfyUI's.
    assert worker["environment"]["GENSTACK_HEALTH_URL"] == f"http://127.0.0.1:{health_port}/readyz"
    assert QUEUE == "comfyui"


def test_the_gateway_serves_comfyui_xtts_and_chatterbox_by_default(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    value = services["gateway"]["environment"]["GATEWAY_ENABLED_BACKENDS"]
    assert value.startswith("${GATEWAY_ENABLED_BACKENDS:-") and value.endswith("}")
    default = value.removeprefix("${GATEWAY_ENABLED_BACKENDS:-").removesuffix("}")
    monkeypatch.setenv("GATEWAY_ENABLED_BACKENDS", default)
    monkeypatch.setenv("GATEWAY_AUTH_DISABLED", "true")
    backends = GatewaySettings().backend_configs()
    assert set(backends) == {"xtts", "comfyui", "chatterbox"}
    assert backends["comfyui"].queue == QUEUE


def test_image_and_video_jobs_run_on_comfyuis_templates_by_default(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """compose routes typed image and video jobs (and OpenAI's image models) to the ComfyUI
    worker, which runs them on its templates; workflow jobs too."""
    environment = services["gateway"]["environment"]
    for name, value in environment.items():
        if isinstance(value, str) and value.startswith("${") and ":-" in value:
            monkeypatch.setenv(name, value.split(":-", 1)[1].removesuffix("}"))
    monkeypatch.setenv("GATEWAY_AUTH_DISABLED", "true")
    registry = build_registry(GatewaySettings())
    for job_type in (JobType.WORKFLOW, JobType.IMAGE, JobType.VIDEO):
        backend = registry.default_for(job_type)
        assert backend is not None and backend.name == "comfyui"
    assert registry.image_models["dall-e-3"] == "comfyui"


def test_the_worker_reads_stored_inputs_and_the_voice_library(services: dict[str, Any]) -> None:
    worker = services["comfyui-worker"]
    assert "storage:/data/storage:ro" in worker["volumes"]
    assert "voices:/data/voices:ro" in worker["volumes"]
    assert worker["environment"]["TTS_VOICES_DIR"] == "/data/voices"
    # The gateway stores typed jobs' input files where the worker reads them.
    assert "storage:/data/storage" in services["gateway"]["volumes"]
