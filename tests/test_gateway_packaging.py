"""The gateway's place in compose.yaml and its image (compose validity and hadolint for every
Dockerfile are checked in test_config_and_images.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def gateway_service() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["gateway"])


def test_gateway_service() -> None:
    gateway = gateway_service()
    assert gateway["build"]["dockerfile"] == "services/gateway/Dockerfile"
    assert any(str(p).endswith(":8080") for p in gateway["ports"])
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(gateway["healthcheck"]["test"])
    assert gateway["environment"]["REDIS_URL"].startswith("${REDIS_URL:-redis://redis:6379")
    assert {"path": ".env", "required": False} in gateway["env_file"]
    # Signed /v1/files links serve the local store the uploader fills.
    assert "storage:/data/storage:ro" in gateway["volumes"]
    # Secrets come from .env, never from the compose file.
    assert not any("KEY" in k or "SECRET" in k for k in gateway["environment"])


def test_gateway_image_runs_its_console_script() -> None:
    dockerfile = (ROOT / "services" / "gateway" / "Dockerfile").read_text()
    assert "--package genstack-gateway" in dockerfile
    assert 'ENTRYPOINT ["genstack-gateway"]' in dockerfile and 'CMD ["serve"]' in dockerfile
    assert "EXPOSE 8080" in dockerfile
