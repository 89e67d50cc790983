"""`make up` itself, as a user runs it: the whole stack as local processes under supervisord,
its own Redis (AOF) on a free port, XTTS on a tiny checkpoint, local storage, a generated API
key. A tts job submitted to the gateway succeeds and its artifact is fetched through its link;
SIGTERM to make stops every process it started (none is left in its session); started again,
a job queued before the stop completes. A missing prerequisite (ComfyUI asked for, no
checkout) is said once and the rest runs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from genstack.testing.ports import free_port
from genstack.xtts.tiny import build_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SUPERVISORCTL = ROOT / ".venvs" / "deploy" / "bin" / "supervisorctl"
START_TIMEOUT_S = 360  # the first start syncs the environments it needs (uv, from the lock)
STOP_TIMEOUT_S = 150  # the longest sum of the tiers' grace periods (15 + 45 + 30 + 10) + margin

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("xtts") / "model")


def session_members(sid: int) -> list[str]:
    """Processes of session ``sid`` (make's: it is started in a session of its own, and
    supervisord's programs change their process group, not their session)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses.
        fields = text[text.rfind(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(text[: text.rfind(")") + 1])
    return found


@dataclass
class Up:
    """One `make up` run."""

    process: subprocess.Popen[bytes]
    log: Path
    gateway: str

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"make up exited with {self.process.returncode}:\n{self.output()}")
            if "genstack: ready:" in self.output():
                return
            time.sleep(0.5)
        pytest.fail(f"make up not ready after {START_TIMEOUT_S}s:\n{self.output()[-6000:]}")

    def stop(self) -> int:
        """SIGTERM to make, as `kill` or a container stop sends it; then nothing may be left."""
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make up still running {STOP_TIMEOUT_S}s after SIGTERM")
        deadline = time.monotonic() + 5
        while (left := session_members(self.process.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert left == [], f"processes left after make up stopped: {left}"
        return code


@pytest.fixture
def make_up(tmp_path: Path, tiny_checkpoint: Path) -> Iterator[Any]:
    data = tmp_path / "data"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_", "GATEWAY_", "ENABLE_", "XTTS_", "COMFYUI_", "R2_"))
        and k not in ("DATA_DIR", "MODELS_DIR", "CUDA_VISIBLE_DEVICES", "DEPLOY_LOGS")
    }
    gateway_port = free_port()
    env |= {
        "DATA_DIR": str(data),
        "REDIS_PORT": str(free_port()),
        "GATEWAY_PORT": str(gateway_port),
        "XTTS_PORT": str(free_port()),
        "UPLOAD_METRICS_PORT": str(free_port()),
        "WORKER_HEALTH_PORT": str(free_port()),
        "ENABLE_XTTS": "true",
        "XTTS_MODEL_DIR": str(tiny_checkpoint),
        # A prerequisite missing: ComfyUI asked for, with no checkout where it points.
        "ENABLE_COMFYUI": "true",
        "COMFYUI_DIR": str(tmp_path / "no-comfyui-here"),
        "MAKEFLAGS": "",
    }
    runs: list[Up] = []

    def start(name: str) -> Up:
        log = tmp_path / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["make", "--no-print-directory", "up"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        up = Up(process, log, f"http://127.0.0.1:{gateway_port}")
        runs.append(up)
        return up

    yield start
    # A test that failed half-way: stop it as a user would, then kill what is left of its
    # session (supervisord's programs have process groups of their own, not sessions).
    for up in runs:
        if up.process.poll() is None:
            up.process.send_signal(signal.SIGTERM)
            try:
                up.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                up.process.kill()
                up.process.wait()
        for member in session_members(up.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(member.split()[0]), signal.SIGKILL)


def submit(http: httpx.Client, text: str) -> str:
    answer = http.post(
        "/v1/jobs",
        json={"type": "tts", "backend": "xtts", "params": {"input": text, "voice": "Ana Florence"}},
    )
    assert answer.status_code in (200, 201, 202), answer.text
    return str(answer.json()["id"])


def wait_job(http: httpx.Client, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    pytest.fail(f"job {job_id} not finished after {timeout}s: {job}")


def test_make_up_runs_the_stack_stops_it_and_keeps_queued_work(
    make_up: Any, tmp_path: Path
) -> None:
    first: Up = make_up("first")
    first.wait_ready()
    output = first.output()
    data = tmp_path / "data"

    # The generated key: said once, stored in the data folder (only the key, 0600).
    [key] = re.findall(r"^    (gs-\S+)$", output, re.M)
    keys_file = data / "gateway-api-keys"
    assert keys_file.read_text().split()[-1] == key
    assert keys_file.stat().st_mode & 0o777 == 0o600
    # The missing prerequisite: one line that says what to do; the rest runs.
    said = [
        line for line in output.splitlines() if line.startswith("genstack:") and "comfyui" in line
    ]
    assert said == [
        f"genstack: left out: comfyui: COMFYUI_DIR={tmp_path / 'no-comfyui-here'} has no "
        "main.py: point COMFYUI_DIR at a ComfyUI checkout (the commit pinned in "
        "services/comfyui/nodes.lock.yaml) and COMFYUI_PYTHON at its interpreter, or set "
        "ENABLE_COMFYUI=false"
    ], output
    # Every program's health check passes (the pod image's HEALTHCHECK runs the same).
    health = subprocess.run(
        [ROOT / ".venvs" / "deploy" / "bin" / "genstack-deploy", "health", "--run-dir",
         data / "run"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert health.returncode == 0, health.stdout
    assert sorted(line.split()[0] for line in health.stdout.splitlines()) == [
        "gateway", "redis", "uploader", "xtts", "xtts-worker"
    ]  # fmt: skip

    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=first.gateway, headers=headers, timeout=30) as http:
        done = wait_job(http, submit(http, "Hello from make up."))
        assert done["status"] == "succeeded", done
        [artifact] = done["artifacts"]
        # The artifact through its link (local storage: the gateway's signed /v1/files).
        fetched = httpx.get(artifact["url"], timeout=30)
        assert fetched.status_code == 200
        assert len(fetched.content) == artifact["bytes"] > 0
        assert hashlib.sha256(fetched.content).hexdigest() == artifact["sha256"]

        # A job queued while its worker is held, then the whole stack stopped.
        conf = data / "run" / "supervisord.conf"
        subprocess.run(
            [SUPERVISORCTL, "-c", conf, "stop", "workers:xtts-worker"], check=True,
            capture_output=True,
        )  # fmt: skip
        queued = submit(http, "Queued before the stop.")
        time.sleep(1)
        assert http.get(f"/v1/jobs/{queued}").json()["status"] == "queued"

    first.stop()
    output = first.output()
    # The gateway stops first, Redis last (the queue outlives every worker).
    stopped = re.findall(r"stopped: (\S+) ", output)
    assert stopped[-1] == "redis" and stopped.index("gateway") < stopped.index("xtts"), stopped

    second: Up = make_up("second")
    second.wait_ready()
    assert key not in second.output(), "the key is said only when it is made"
    with httpx.Client(base_url=second.gateway, headers=headers, timeout=30) as http:
        done = wait_job(http, queued)
        assert done["status"] == "succeeded", done
    second.stop()
