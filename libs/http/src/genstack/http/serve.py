"""Running an app with uvicorn the same way in every service.

Until SIGTERM/SIGINT; then uvicorn stops accepting, and answers in flight (streamed audio,
SSE) get ``graceful_shutdown_s`` to finish. Logging stays ours (``configure_logging``, with
the request id on each record); uvicorn's access log is off (the edge middleware counts and,
where the service wants it, logs each request with its id, and never with its query string,
which may carry client text) and so is its Server header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from genstack.http.middleware import log_request_ids


@dataclass(frozen=True)
class ServeOptions:
    host: str
    port: int
    #: "auto" takes uvloop / httptools when installed.
    loop: str = "auto"
    http: str = "auto"
    #: Processes; above 1 the app must be an import string of a factory (each process
    #: builds its own app).
    workers: int = 1
    #: Trust X-Forwarded-* from these addresses (comma list, or *); None: ignore them.
    forwarded_allow_ips: str | None = None
    #: Open connections per process past which uvicorn answers 503; None: no limit.
    limit_concurrency: int | None = None
    graceful_shutdown_s: int = 20


def serve(app: ASGIApp | str, options: ServeOptions) -> int:
    """Serve ``app`` (or, with ``workers > 1``, the factory named ``module:function``) until
    a signal: 0 once stopped after a clean start, 1 when the server could not start. (After
    draining on SIGTERM uvicorn raises the signal again, so the process ends by it.)"""
    log_request_ids()
    config: dict[str, Any] = {
        "host": options.host,
        "port": options.port,
        "loop": options.loop,
        "http": options.http,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "proxy_headers": options.forwarded_allow_ips is not None,
        "forwarded_allow_ips": options.forwarded_allow_ips,
        "limit_concurrency": options.limit_concurrency,
        "timeout_graceful_shutdown": options.graceful_shutdown_s,
    }
    if options.workers > 1:
        if not isinstance(app, str):
            raise TypeError("several workers need the app as an import string of a factory")
        uvicorn.run(app, factory=True, workers=options.workers, **config)
        return 0
    server = uvicorn.Server(uvicorn.Config(app, **config))
    server.run()
    return 0 if server.started else 1
