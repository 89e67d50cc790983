"""genstack.core.health: the HealthServer on a real socket, and its checks against a real
redis-server and real HTTP answers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from genstack.core.health import OK, HealthServer, http_check, redis_check, run_checks
from genstack.testing.ports import free_port


def broken() -> str:
    raise RuntimeError("no idea")


@pytest.fixture
def state() -> dict[str, str]:
    return {"backend": OK}


@pytest.fixture
def server(state: dict[str, str]) -> Iterator[HealthServer]:
    registry = CollectorRegistry()
    Counter("genstack_test_things", "Things.", registry=registry).inc(3)
    readiness = run_checks({"backend": lambda: state["backend"]})
    health = HealthServer("127.0.0.1", 0, registry, readiness)
    health.start()
    try:
        yield health
    finally:
        health.stop()


def test_endpoints_answer_from_the_checks_and_the_registry(
    server: HealthServer, state: dict[str, str]
) -> None:
    base = f"http://127.0.0.1:{server.port}"
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{base}/readyz")
    assert (ready.status_code, ready.json()) == (200, {"ready": True, "checks": {"backend": OK}})
    state["backend"] = "loading its model"
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"ready": False, "checks": {"backend": "loading its model"}}
    assert "genstack_test_things_total 3.0" in httpx.get(f"{base}/metrics").text
    assert httpx.get(f"{base}/other").status_code == 404


def test_http_check_reports_status_and_errors(server: HealthServer, state: dict[str, str]) -> None:
    base = f"http://127.0.0.1:{server.port}"
    assert http_check(f"{base}/healthz")() == OK
    state["backend"] = "down"
    assert http_check(f"{base}/readyz")() == f"{base}/readyz answered HTTP 503"
    dead = f"http://127.0.0.1:{free_port()}/readyz"
    assert http_check(dead)().startswith(f"{dead} unreachable:")


def test_redis_check_answers_at_once_either_way(redis_url: str) -> None:
    assert redis_check(redis_url)() == OK
    started = time.monotonic()
    answer = redis_check(f"redis://127.0.0.1:{free_port()}/0")()
    assert answer.startswith("unreachable:")
    assert time.monotonic() - started < 2  # no retries: a probe never waits out a backoff


def test_a_check_that_raises_is_reported_not_fatal() -> None:
    assert run_checks({"x": broken, "y": lambda: OK})() == {
        "x": "check failed: RuntimeError: no idea",
        "y": OK,
    }
