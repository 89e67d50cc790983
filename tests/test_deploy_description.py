"""compose.yaml agrees with the one description of the services (genstack.deploy.services),
from which `make up` and the pod image generate supervisord's configuration: the same
services, commands, packages, health checks, GPU reservations, stop grace periods and
dependencies, and compose.cpu.yaml's CPU settings."""

from __future__ import annotations

import re
from typing import Any

import pytest
from test_config_and_images import ROOT, load_compose

from genstack.deploy.services import ENGINES, REDIS_FLAGS, ROLES, Role

# Described, not in compose.yaml: none (the set stays for a service being built).
NOT_YET_IN_COMPOSE: set[str] = set()
COMPOSE_DEFAULT_GRACE_S = 10


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose("compose.yaml")


def seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, value
    return int(match.group(1))


def image_health(service: dict[str, Any]) -> str:
    """The URL the service's health check reaches: its own healthcheck, else the image's
    (GENSTACK_HEALTH_URL, from the environment or the Dockerfile's PORT and HEALTH_PATH)."""
    test = service.get("healthcheck", {}).get("test")
    if test is not None:
        found = re.search(r"urlopen\('([^']+)'", " ".join(test))
        if found:
            return found.group(1)
        if test[1:] == ["redis-cli", "ping"]:
            return "redis://127.0.0.1:6379/0"
    env = service.get("environment", {})
    if "GENSTACK_HEALTH_URL" in env:
        return str(env["GENSTACK_HEALTH_URL"])
    args = service["build"]["args"]
    return f"http://127.0.0.1:{args['PORT']}{args.get('HEALTH_PATH', '/healthz')}"


def described_health(role: Role) -> str:
    if role.health_kind == "redis":
        return f"redis://127.0.0.1:{role.port}/0"
    return f"http://127.0.0.1:{role.port}{role.health_path}"


def package_of(service: dict[str, Any]) -> str | None:
    if "build" in service:
        return str(service["build"]["args"]["PACKAGE"]).removeprefix("genstack-")
    image = str(service["image"])
    if image.startswith("genstack/"):
        return image.removeprefix("genstack/").split(":")[0]
    return None


def test_compose_runs_exactly_the_described_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == set(ROLES) - NOT_YET_IN_COMPOSE


@pytest.mark.parametrize("name", sorted(set(ROLES) - NOT_YET_IN_COMPOSE))
def test_each_compose_service_is_its_description(compose: dict[str, Any], name: str) -> None:
    service, role = compose["services"][name], ROLES[name]
    assert package_of(service) == role.package
    if role.package is None:
        # Redis: compose's flags are the description's (which adds only its log to stdout).
        assert service["command"][0] == "redis-server"
        assert tuple(service["command"][1:]) == REDIS_FLAGS[: len(service["command"]) - 1]
    else:
        assert tuple(service["command"]) == role.command
    assert image_health(service) == described_health(role)
    assert ("deploy" in service) == role.gpu
    grace = service.get("stop_grace_period")
    assert (seconds(grace) if grace else COMPOSE_DEFAULT_GRACE_S) == role.stop_grace_s
    assert set(service.get("depends_on", {})) == set(role.depends_on)


def test_every_described_service_has_a_health_check() -> None:
    for role in ROLES.values():
        assert role.health_kind == "redis" or role.health_path.startswith("/"), role.name
        assert role.port_var.endswith("_PORT"), role.name


def test_compose_cpu_sets_what_the_description_sets_without_a_gpu() -> None:
    cpu = load_compose("compose.cpu.yaml")["services"]
    for name, engine in ENGINES.items():
        if name not in cpu or not engine.cpu_env:
            continue
        env = {
            key: re.sub(r"^\$\{\w+:-(.*)\}$", r"\1", str(value))
            for key, value in cpu[name]["environment"].items()
        }
        assert env == dict(engine.cpu_env), name


def test_the_description_is_in_the_documented_layout() -> None:
    # The package the Makefile, mypy and CI find like any other (docs/development.md).
    assert (ROOT / "deploy" / "pyproject.toml").is_file()
    assert (ROOT / "deploy" / "src" / "genstack" / "deploy" / "services.py").is_file()


def test_the_documented_compose_pattern_for_several_gpus_is_the_descriptions() -> None:
    """docs/up.md's compose.gpus.yaml: valid Compose with compose.yaml, one server per GPU
    reserved by device_ids, each GPU's worker on that GPU's server, named as `make up` names
    them (genstack.deploy.services)."""
    import yaml
    from test_config_and_images import (
        ComposeLoader,
        Override,
        Reset,
        merge_compose,
        validate_compose,
    )

    def resolved(value: Any) -> Any:
        """The tags left where nothing was below to merge with (new services)."""
        if isinstance(value, Override):
            return resolved(value.value)
        if isinstance(value, dict):
            return {k: resolved(v) for k, v in value.items() if not isinstance(v, Reset)}
        if isinstance(value, list):
            return [resolved(v) for v in value]
        return value

    doc = (ROOT / "docs" / "up.md").read_text()
    [block] = re.findall(r"```yaml\n(# compose\.gpus\.yaml.*?)```", doc, re.S)
    override = yaml.load(block, ComposeLoader)
    merged = resolved(merge_compose(load_compose("compose.yaml"), override))
    validate_compose(merged)
    services = override["services"]
    for name, engine in ENGINES.items():
        if name not in load_compose("compose.yaml")["services"]:
            continue
        for gpu, server in ((0, name), (1, f"{name}-gpu1")):
            devices = services[server]["deploy"]["resources"]["reservations"]["devices"]
            assert devices.value == [
                {"driver": "nvidia", "device_ids": [str(gpu)], "capabilities": ["gpu"]}
            ]
        worker = services[f"{name}-worker-gpu1"]
        assert worker["extends"] == {"file": "compose.yaml", "service": engine.worker.name}
        port = engine.server.port
        assert worker["environment"] == {engine.url_var: f"http://{name}-gpu1:{port}"}
        assert set(worker["depends_on"]) == {"redis", f"{name}-gpu1"}
        assert services[f"{name}-gpu1"]["extends"]["service"] == engine.server.name
