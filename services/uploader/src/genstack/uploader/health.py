"""The uploader's small HTTP port: /healthz, /readyz, /metrics."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], dict[str, str]]  # name -> "ok" or what is wrong


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
                    ready = all(value == "ok" for value in checks.values())
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
