"""The monitor program (`genstack-deploy monitor`), the last of every plan: it says once when the
whole stack is ready, what it is still waiting for, and when a service has stopped for good
(supervisord gave up on it, or it exited with a code that means "do not restart"), with the
tail of its log. It reads process states from supervisord's control socket and runs the
description's health checks; it starts and stops nothing."""

from __future__ import annotations

import signal
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from genstack.deploy.health import Check, check, not_ready

__all__ = ["Monitor", "log_tail"]

# supervisord states after which a process will not come back by itself.
GAVE_UP = {"FATAL", "EXITED"}


def log_tail(path: str | None, lines: int = 20) -> list[str]:
    if not path:
        return []
    try:
        with Path(path).open("rb") as log:
            log.seek(0, 2)
            log.seek(max(0, log.tell() - 16384))
            text = log.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def supervisor_states(socket_path: Path) -> dict[str, dict[str, Any]]:
    """Process name -> supervisord's info (statename, exitstatus, description)."""
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{socket_path}")
    proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
    try:
        infos: list[dict[str, Any]] = proxy.supervisor.getAllProcessInfo()  # type: ignore[assignment]
    finally:
        transport.close()
    return {info["name"]: info for info in infos}


class Monitor:
    def __init__(
        self,
        checks: list[Check],
        socket_path: Path,
        banner: str,
        *,
        out: TextIO = sys.stdout,
        states: Callable[[Path], dict[str, dict[str, Any]]] = supervisor_states,
        interval_s: float = 1.0,
        waiting_every_s: float = 30.0,
    ) -> None:
        self.checks = checks
        self.socket_path = socket_path
        self.banner = banner
        self.out = out
        self.states = states
        self.interval_s = interval_s
        self.waiting_every_s = waiting_every_s
        self.ready_once = False
        self.reported: set[str] = set()  # gave up, said once
        self.unhealthy: set[str] = set()  # after the first ready
        self.stopping = False

    def say(self, line: str) -> None:
        self.out.write(f"genstack: {line}\n")
        self.out.flush()

    def step(self, now: float, last_waiting: float) -> float:
        """One round; returns when the waiting list was last said."""
        try:
            states = self.states(self.socket_path)
        except (OSError, xmlrpc.client.Error):
            states = {}
        for target in self.checks:
            info = states.get(target.name)
            if info is None or info["statename"] not in GAVE_UP:
                self.reported.discard(target.name)
                continue
            if target.name in self.reported:
                continue
            self.reported.add(target.name)
            how = (
                "supervisord gave up on it (it kept exiting at start)"
                if info["statename"] == "FATAL"
                else f"it exited with code {info['exitstatus']}, which means do not restart"
            )
            self.say(f"{target.name} stopped for good: {how}.")
            tail = log_tail(target.log)
            if tail:
                self.say(f"last lines of {target.log}:")
                for line in tail:
                    self.out.write(f"  {line}\n")
                self.out.flush()
        live = [t for t in self.checks if t.name not in self.reported]
        failing = {t.name: why for t in live if (why := check(t)) is not None}
        if not self.ready_once:
            if not failing and live:
                self.ready_once = True
                self.say(self.banner)
            elif now - last_waiting >= self.waiting_every_s:
                # A live server that is not ready says why (a model loading, or failed).
                for target in live:
                    if target.name not in failing and (why := not_ready(target)) is not None:
                        failing[target.name] = f"not ready, {why}"
                waiting = ", ".join(f"{name} ({why})" for name, why in failing.items())
                self.say(f"waiting for {waiting}")
                return now
            return last_waiting
        for name, why in failing.items():
            if name not in self.unhealthy:
                self.say(f"{name} is not healthy: {why}")
        for name in self.unhealthy - set(failing):
            self.say(f"{name} is healthy again")
        self.unhealthy = set(failing)
        return last_waiting

    def run(self) -> int:
        def stop(signum: int, frame: FrameType | None) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        started = time.monotonic()
        last_waiting = started
        failed_before = False
        while not self.stopping:
            try:
                last_waiting = self.step(time.monotonic(), last_waiting)
                failed_before = False
            except Exception as exc:
                # Reporting must not die of one bad round; said once per run of failures.
                if not failed_before:
                    self.say(f"monitor: {type(exc).__name__}: {exc}")
                failed_before = True
            time.sleep(self.interval_s)
        return 0
