"""The gateway's place in compose.yaml and its image (compose validity and hadolint for every
Dockerfile are checked in test_config_and_images.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def gateway_service() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["gateway"])


def test_gateway_service() -> None:
    gateway = gateway_service()
    assert gateway["build"]["dockerfile"] == "docker/python-service.Dockerfile"
    assert any(str(p).endswith(":8080") for p in gateway["ports"])
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(gateway["healthcheck"]["test"])
    assert gateway["environment"]["REDIS_URL"].startswith("${REDIS_URL:-redis://redis:6379")
    assert {"path": ".env", "required": False} in gateway["env_file"]
    # Signed /v1/files links serve the local store the uploader fills.
    # It writes the input files of ComfyUI jobs there (local storage); the worker reads them.
    assert "storage:/data/storage" in gateway["volumes"]
    # Secrets come from .env, never from the compose file.
    assert not any("KEY" in k or "SECRET" in k for k in gateway["environment"])


def test_gateway_image_runs_its_console_script() -> None:
    """The shared CPU-service Dockerfile, built for genstack-gateway: its console script, the
    `serve` command, the port the server listens on and the readiness probe."""
    gateway = gateway_service()
    args = gateway["build"]["args"]
    assert args == {"PACKAGE": "genstack-gateway", "PORT": "8080", "HEALTH_PATH": "/readyz"}
    assert gateway["command"] == ["serve"]
    assert gateway["environment"]["GATEWAY_PORT"] == args["PORT"]
    scripts = tomllib.loads((ROOT / "services/gateway/pyproject.toml").read_text())["project"]
    assert scripts["scripts"]["genstack-gateway"] == "genstack.gateway.cli:main"
    dockerfile = (ROOT / "docker" / "python-service.Dockerfile").read_text()
    assert "EXPOSE ${PORT}" in dockerfile
    assert "GENSTACK_HEALTH_URL=http://127.0.0.1:${PORT}${HEALTH_PATH}" in dockerfile
