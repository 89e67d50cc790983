"""Running an app with uvicorn the same way in every TTS service."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

GRACEFUL_SHUTDOWN_S = 20


def serve_app(app: FastAPI, *, host: str, port: int) -> int:
    """Serve until SIGTERM/SIGINT; in-flight responses get GRACEFUL_SHUTDOWN_S to finish.
    Logging stays ours (configure_logging); uvicorn's access log is off (metrics count
    requests, and request lines would put client text into the log)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        proxy_headers=False,
        server_header=False,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1
