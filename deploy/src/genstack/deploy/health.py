"""Health checks of a plan's programs, as the description names them: an HTTP GET that answers
200, a Redis PING, a TCP connect. Used by the monitor program and `genstack-deploy health`
(the pod image's HEALTHCHECK)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Check", "check", "load_checks", "not_ready", "save_checks"]


@dataclass(frozen=True)
class Check:
    name: str
    kind: str  # http | redis | tcp
    url: str
    log: str | None  # the program's log file (files mode), for the tail of a failure
    # A genstack server checked for liveness (/healthz, as compose does) also says why it is
    # not ready yet on /readyz (a model still loading, or failed): for the monitor's words.
    ready_url: str | None = None


def check(target: Check, timeout: float = 2.0) -> str | None:
    """None when healthy, else why not (one line)."""
    if target.kind == "http":
        try:
            with urllib.request.urlopen(target.url, timeout=timeout) as answer:  # noqa: S310 - our own loopback URL
                return None if answer.status == 200 else f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}{_why(exc)}"
        except (OSError, ValueError) as exc:
            return _reason(exc)
    host, port = target.url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            if target.kind == "tcp":
                return None
            sock.settimeout(timeout)
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError as exc:
        return _reason(exc)
    # -LOADING while the AOF loads: not ready yet.
    return None if reply.startswith(b"+PONG") else reply.decode(errors="replace").strip()


def _why(answer: urllib.error.HTTPError) -> str:
    """The failing checks of a genstack /readyz answer ({"checks": {name: "ok" | why}})."""
    try:
        body = json.loads(answer.read(4096) or b"{}")
    except (OSError, ValueError):
        return ""
    checks = body.get("checks") if isinstance(body, dict) else None
    if not isinstance(checks, dict):
        return ""
    failing = [f"{k}: {v}" for k, v in checks.items() if v != "ok"]
    return f": {'; '.join(failing)}" if failing else ""


def not_ready(target: Check, timeout: float = 2.0) -> str | None:
    """Why a live server is not ready yet (None: ready, or nothing to ask)."""
    if target.ready_url is None:
        return None
    return check(Check(target.name, "http", target.ready_url, None), timeout)


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "reason", None)
    return str(inner if inner is not None else exc) or type(exc).__name__


def save_checks(path: Path, checks: list[Check]) -> None:
    path.write_text(json.dumps([c.__dict__ for c in checks], indent=1))


def load_checks(path: Path) -> list[Check]:
    return [Check(**item) for item in json.loads(path.read_text())]
