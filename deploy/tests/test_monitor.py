"""The monitor against real HTTP servers on loopback and supervisord's process states: the
banner once when all are healthy, what it waits for and why (a /readyz's failing checks), a
service that gave up said once with its log tail, and a Redis PING check."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from genstack.deploy.health import Check, check
from genstack.deploy.monitor import Monitor
from genstack.testing.redis_server import RedisServer


class Answers:
    """path -> (status, body) a test changes while the server runs."""

    def __init__(self) -> None:
        self.by_path: dict[str, tuple[int, dict[str, Any]]] = {}


@pytest.fixture
def server() -> Iterator[tuple[str, Answers]]:
    answers = Answers()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers.by_path.get(self.path, (404, {}))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", answers
    httpd.shutdown()
    httpd.server_close()


def test_the_monitor_says_ready_once_and_why_it_waits(
    server: tuple[str, Answers], tmp_path: Path
) -> None:
    base, answers = server
    answers.by_path["/healthz"] = (200, {})
    answers.by_path["/readyz"] = (503, {"checks": {"model": "loading", "redis": "ok"}})
    answers.by_path["/worker"] = (503, {"checks": {"xtts": "answered HTTP 503"}})
    checks = [
        Check("xtts", "http", f"{base}/healthz", None, ready_url=f"{base}/readyz"),
        Check("xtts-worker", "http", f"{base}/worker", None),
    ]
    out = io.StringIO()
    states: dict[str, dict[str, Any]] = {}
    monitor = Monitor(checks, tmp_path / "sock", "ready: all", out=out, states=lambda _: states)
    monitor.step(now=100.0, last_waiting=0.0)
    assert out.getvalue() == (
        "genstack: waiting for xtts-worker (HTTP 503: xtts: answered HTTP 503), "
        "xtts (not ready, HTTP 503: model: loading)\n"
    )
    answers.by_path["/worker"] = (200, {})
    monitor.step(now=101.0, last_waiting=100.0)
    monitor.step(now=102.0, last_waiting=100.0)
    assert out.getvalue().splitlines()[1:] == ["genstack: ready: all"]
    # After ready: a service going unhealthy and coming back is said, once each.
    answers.by_path["/worker"] = (503, {"checks": {"redis": "down"}})
    monitor.step(now=103.0, last_waiting=100.0)
    monitor.step(now=104.0, last_waiting=100.0)
    answers.by_path["/worker"] = (200, {})
    monitor.step(now=105.0, last_waiting=100.0)
    assert out.getvalue().splitlines()[2:] == [
        "genstack: xtts-worker is not healthy: HTTP 503: redis: down",
        "genstack: xtts-worker is healthy again",
    ]


def test_a_service_that_gave_up_is_said_once_with_its_log(
    server: tuple[str, Answers], tmp_path: Path
) -> None:
    base, answers = server
    answers.by_path["/healthz"] = (200, {})
    log = tmp_path / "comfyui.log"
    log.write_text("".join(f"line {i}\n" for i in range(50)) + "ComfyUI not started: no GPU\n")
    checks = [
        Check("gateway", "http", f"{base}/healthz", None),
        Check("comfyui", "http", f"{base}/missing", str(log)),
    ]
    out = io.StringIO()
    states = {"comfyui": {"statename": "EXITED", "exitstatus": 2}}
    monitor = Monitor(checks, tmp_path / "sock", "ready", out=out, states=lambda _: states)
    for now in (1.0, 2.0, 3.0):
        monitor.step(now=now, last_waiting=0.0)
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "genstack: comfyui stopped for good: it exited with code 2, which means do not restart."
    )
    assert lines[1] == f"genstack: last lines of {log}:"
    assert lines[2:22] == [f"  line {i}" for i in range(31, 50)] + ["  ComfyUI not started: no GPU"]
    # The others are still judged: the stack without it is ready.
    assert lines[22:] == ["genstack: ready"]


def test_redis_and_tcp_checks(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as redis:
        assert check(Check("redis", "redis", redis.url, None)) is None
        assert check(Check("redis", "tcp", f"tcp://127.0.0.1:{redis.port}", None)) is None
    assert check(Check("redis", "redis", redis.url, None)) is not None
