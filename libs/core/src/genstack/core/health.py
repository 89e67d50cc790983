"""The small HTTP port of a worker process (the uploader, every job worker): /healthz,
/readyz and /metrics, on the standard library's threaded HTTP server.

- ``/healthz``: 200 while the process runs.
- ``/readyz``: every named check; 200 when all say "ok", else 503; the body names each
  check and what is wrong with it: ``{"ready": false, "checks": {"redis": "unreachable: ..."}}``.
- ``/metrics``: the process's own Prometheus registry (no global one).

A check is a callable that answers "ok" or what is wrong; it runs on the request's thread,
so one that waits on the network needs a short timeout (those here have one).
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.exceptions import RedisError

from genstack.core.redis_client import connect

log = logging.getLogger(__name__)

OK = "ok"
Check = Callable[[], str]  # "ok" or what is wrong
ReadinessCheck = Callable[[], dict[str, str]]  # name -> "ok" or what is wrong
PROBE_TIMEOUT_S = 2.0


class HealthServer:
    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, readiness: ReadinessCheck
    ) -> None:
        self.registry = registry
        self.readiness = readiness
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._send(200, "application/json", b'{"status":"ok"}')
                elif self.path == "/readyz":
                    checks = server.readiness()
                    ready = all(value == OK for value in checks.values())
                    body = json.dumps({"ready": ready, "checks": checks}).encode()
                    self._send(200 if ready else 503, "application/json", body)
                elif self.path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(server.registry))
                else:
                    self._send(404, "application/json", b'{"error":"not found"}')

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # probes every few seconds would flood the log

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("health endpoints up", extra={"port": self.port})

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def run_checks(checks: Mapping[str, Check]) -> ReadinessCheck:
    """One readiness callable over named checks; a check that raises reports the error."""

    def readiness() -> dict[str, str]:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                results[name] = check()
            except Exception as exc:
                results[name] = f"check failed: {type(exc).__name__}: {exc}"
        return results

    return readiness


def redis_check(url: str, timeout_s: float = 1.0) -> Check:
    """PING through a client of its own with short timeouts and no retries, so a Redis that
    is down or hanging answers the probe within about ``timeout_s``."""
    client = connect(url, socket_timeout=timeout_s, connect_timeout=timeout_s, retries=0)

    def check() -> str:
        try:
            client.ping()
        except RedisError as exc:
            return f"unreachable: {exc}"
        return OK

    return check


def http_check(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> Check:
    """GET ``url`` (a backend's /readyz): "ok" on a 2xx, else the status or the error, with
    the URL. No proxies from the environment, as the workers' own clients."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def check() -> str:
        try:
            with opener.open(url, timeout=timeout_s) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            return f"{url} unreachable: {reason}"
        return OK if 200 <= status < 300 else f"{url} answered HTTP {status}"

    return check
