"""A webhook receiver on loopback for tests: records every delivery and answers the
statuses a test plans for each path (then 200)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from genstack.testing.ports import free_port

__all__ = ["Delivery", "Receiver"]


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float = field(default_factory=time.monotonic)


class Receiver:
    """A webhook receiver on loopback; ``plan[path]`` lists the statuses it answers in turn
    (then 200)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.deliveries: list[Delivery] = []
        self.plan: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    statuses = receiver.plan.get(self.path, [])
                    status = statuses.pop(0) if statuses else 200
                    receiver.deliveries.append(
                        Delivery(
                            self.path, {k.lower(): v for k, v in self.headers.items()}, body, status
                        )
                    )
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.path == path]

    def wait(self, path: str, count: int, timeout: float = 20.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while len(self.to(path)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{path}: {len(self.to(path))} of {count} deliveries")
            time.sleep(0.05)
        return self.to(path)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
