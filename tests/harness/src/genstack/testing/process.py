"""Real service processes for tests: started, probed until ready, terminated or killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from genstack.testing.logs import tail

__all__ = ["ServiceProcess", "console_script"]

STOP_TIMEOUT_S = 10.0


def console_script(name: str) -> str:
    """Path of console script ``name`` installed in the environment running the tests."""
    path = Path(sys.executable).parent / name
    if not path.is_file():
        raise FileNotFoundError(
            f"console script {name!r} is not installed in {path.parent} "
            "(is the package that provides it synced into this environment?)"
        )
    return str(path)


class ServiceProcess:
    """A process started at construction, in its own process group, output to ``log_path``.

    The child's environment is os.environ plus ``env``; PYTHONUNBUFFERED=1 unless ``env``
    says otherwise, so a Python service's log is complete when a test reads it.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        log_path: Path,
        ready_url: str | None = None,
        cwd: str | Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.ready_url = ready_url
        child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            # Own session (and so process group): kill() reaches the workers it forks too,
            # and a Ctrl-C aimed at pytest does not reach it.
            self._proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env,
                cwd=cwd,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def is_running(self) -> bool:
        return self._proc.poll() is None

    def logs(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, max_lines: int = 40) -> str:
        return tail(self.log_path, max_lines)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll ``ready_url`` until it answers 200; fail at once if the process exits.

        Without a ready_url this only checks that the process is still running.
        """
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with httpx.Client(trust_env=False, timeout=2.0) as http:
            while True:
                if not self.is_running():
                    raise RuntimeError(
                        f"{self._describe()} exited with code {self._proc.returncode} before it "
                        f"was ready; log tail ({self.log_path}):\n{self.log_tail()}"
                    )
                if self.ready_url is None:
                    return
                try:
                    response = http.get(self.ready_url)
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"{self._describe()} not ready at {self.ready_url} after {timeout:.1f}s "
                        f"(last: {last}); log tail ({self.log_path}):\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    def terminate(self) -> None:
        """SIGTERM to the process itself: a graceful shutdown is its job (and its children's)."""
        if self.is_running():
            self._proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the whole process group (a crash of the service and all it forked)."""
        self._signal_group(signal.SIGKILL)
        self._proc.wait()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit and return the code (negative: killed by that signal).

        Raises subprocess.TimeoutExpired after ``timeout``.
        """
        return self._proc.wait(timeout=timeout)

    def stop(self) -> None:
        """SIGTERM, wait up to 10 s, then SIGKILL; leftover group members are killed too."""
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=STOP_TIMEOUT_S)
        self.kill()

    def _signal_group(self, sig: signal.Signals) -> None:
        # The group id is the pid (start_new_session); it outlives the leader while any
        # child lives, so this still works after the leader exited.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def _describe(self) -> str:
        return f"process {Path(self.argv[0]).name} (pid {self._proc.pid})"
