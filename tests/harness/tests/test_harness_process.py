from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from genstack.testing.plugin import StartServiceProcess
from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess, console_script

# A service that forks a helper (to see kill() reach the whole group) and answers /health.
SERVICE = textwrap.dedent(
    """
    import http.server, os, subprocess, sys

    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(os.environ["HELPER_PID_FILE"], "w") as f:
        f.write(str(helper.pid))

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

    server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health)
    print("tiny service listening on", sys.argv[1], "greeting", os.environ["GREETING"])
    server.serve_forever()
    """
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still "exists"; it is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][0] != "Z"


def start_service(start: StartServiceProcess, tmp_path: Path) -> tuple[ServiceProcess, int]:
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    port = free_port()
    proc = start(
        [sys.executable, str(script), str(port)],
        env={"GREETING": "hello", "HELPER_PID_FILE": str(tmp_path / "helper.pid")},
        ready_url=f"http://127.0.0.1:{port}/health",
        name="tiny",
    )
    proc.wait_ready(timeout=15)
    return proc, int((tmp_path / "helper.pid").read_text())


def test_wait_ready_then_terminate(service_process: StartServiceProcess, tmp_path: Path) -> None:
    proc, _ = start_service(service_process, tmp_path)
    assert proc.is_running()
    assert "listening" in proc.logs() and "greeting hello" in proc.logs()
    proc.terminate()
    assert proc.wait(timeout=10) == -15
    assert not proc.is_running()


def test_kill_reaches_the_whole_group(service_process: StartServiceProcess, tmp_path: Path) -> None:
    proc, helper_pid = start_service(service_process, tmp_path)
    assert alive(helper_pid)
    proc.kill()
    assert proc.wait(timeout=5) == -9
    deadline = time.monotonic() + 5
    while alive(helper_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(helper_pid)


def test_early_exit_fails_wait_ready_fast(
    service_process: StartServiceProcess, tmp_path: Path
) -> None:
    script = tmp_path / "broken.py"
    script.write_text("import sys\nprint('boom: missing setting FOO')\nsys.exit(3)\n")
    proc = service_process(
        [sys.executable, str(script)], ready_url=f"http://127.0.0.1:{free_port()}/health"
    )
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"(?s)exited with code 3.*boom: missing setting FOO"):
        proc.wait_ready(timeout=30)
    assert time.monotonic() - started < 5


def test_wait_ready_times_out_with_the_log(tmp_path: Path) -> None:
    proc = ServiceProcess(
        [sys.executable, "-c", "print('still booting', flush=True); import time; time.sleep(30)"],
        log_path=tmp_path / "slow.log",
        ready_url=f"http://127.0.0.1:{free_port()}/health",
    )
    try:
        with pytest.raises(TimeoutError, match=r"(?s)not ready.*still booting"):
            proc.wait_ready(timeout=1)
    finally:
        proc.stop()
    assert not proc.is_running()


def test_stop_kills_what_ignores_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("genstack.testing.process.STOP_TIMEOUT_S", 0.5)
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('up', flush=True); time.sleep(30)"
    )
    proc = ServiceProcess([sys.executable, "-c", code], log_path=tmp_path / "stubborn.log")
    deadline = time.monotonic() + 10
    while "up" not in proc.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.stop()
    assert proc.wait(timeout=1) == -9


def test_console_script() -> None:
    path = console_script("pytest")
    assert subprocess.run([path, "--version"], capture_output=True).returncode == 0
    with pytest.raises(FileNotFoundError, match="no-such-script"):
        console_script("no-such-script")
