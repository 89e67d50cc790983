"""genstack.http over real servers on loopback: a chunked body (no Content-Length) over the
limit is cut off with 413, and ``serve`` runs an app in its own process, answers, and on
SIGTERM lets an answer in flight finish before it exits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from edge_app import BODY_LIMIT, KEY, build_app

AUTH = {"Authorization": f"Bearer {KEY}"}
HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(url)


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(build_app(), host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/healthz")
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


def chunks(total: int, size: int = 100) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


def test_a_chunked_body_over_the_limit_is_413(served: str) -> None:
    response = httpx.post(f"{served}/orders", content=chunks(BODY_LIMIT * 3), headers=AUTH)
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "request_too_large"
    # Under the limit, the same way, it passes.
    fine = httpx.post(f"{served}/upload", content=chunks(BODY_LIMIT - 10), headers=AUTH)
    assert fine.json() == {"bytes": BODY_LIMIT - 10}


def test_request_id_and_refusals_over_the_wire(served: str) -> None:
    answer = httpx.get(f"{served}/request-id", headers={**AUTH, "X-Request-Id": "wire-1"})
    assert answer.headers["x-request-id"] == "wire-1"
    refused = httpx.get(f"{served}/request-id", headers={"X-Request-Id": "wire-2"})
    assert refused.status_code == 401
    assert refused.headers["x-request-id"] == "wire-2"
    assert refused.json()["error"]["code"] == "missing_api_key"


def test_serve_drains_an_answer_in_flight_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from edge_app import build_app;"
        "from genstack.http.serve import ServeOptions, serve;"
        "sys.exit(serve(build_app(), ServeOptions(host='127.0.0.1', port=int(sys.argv[2]),"
        " graceful_shutdown_s=10)))"
    )
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(HERE), str(port)], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/healthz")
        answer = httpx.get(f"{url}/healthz")
        assert "server" not in answer.headers  # server_header off
        with httpx.stream(
            "GET", f"{url}/slow", params={"parts": 6, "delay": 0.25}, headers=AUTH, timeout=30
        ) as response:
            received = []
            for line in response.iter_lines():
                received.append(line)
                if len(received) == 1:
                    os.kill(process.pid, signal.SIGTERM)
        assert received == [f"part {i}" for i in range(6)]
        # uvicorn drains, then ends the process by the signal it was sent.
        assert process.wait(20) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/healthz", timeout=1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
