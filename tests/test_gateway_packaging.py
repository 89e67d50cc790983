"""The gateway's image and its place in compose.yaml."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_SCHEMA = ROOT.parent / "shared" / "schemas" / "compose-spec.json"


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "compose.yaml").read_text()))


def test_compose_is_valid_against_the_compose_spec() -> None:
    if not COMPOSE_SCHEMA.is_file():
        pytest.fail(f"{COMPOSE_SCHEMA} is missing (shared/ sits beside the repository)")
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    # The spec names a draft-07 metaschema by an id jsonschema does not know; check with 7.
    jsonschema.Draft7Validator(schema).validate(compose())


def test_gateway_service() -> None:
    gateway = compose()["services"]["gateway"]
    assert gateway["build"]["dockerfile"] == "services/gateway/Dockerfile"
    assert any(str(p).endswith(":8080") for p in gateway["ports"])
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(gateway["healthcheck"]["test"])
    assert gateway["environment"]["REDIS_URL"].startswith("${REDIS_URL:-redis://redis:6379")
    # Secrets come from .env, never from the compose file.
    assert not any("KEY" in k or "SECRET" in k for k in gateway["environment"])


def test_gateway_dockerfile_is_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, str(ROOT / "services" / "gateway" / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_gateway_image_runs_its_console_script() -> None:
    dockerfile = (ROOT / "services" / "gateway" / "Dockerfile").read_text()
    assert "--package genstack-gateway" in dockerfile
    assert 'ENTRYPOINT ["genstack-gateway"]' in dockerfile and 'CMD ["serve"]' in dockerfile
    assert "USER 10001:10001" in dockerfile
