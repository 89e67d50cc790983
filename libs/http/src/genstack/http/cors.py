"""CORS for browser clients (SillyTavern calls the TTS servers from the browser)."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

_ALLOW_HEADERS = ("Authorization", "Content-Type")
_EXPOSE_HEADERS = ("X-Request-ID", "Retry-After")


def add_cors(
    app: FastAPI,
    origins: Sequence[str],
    *,
    allow_headers: Sequence[str] = (),
    expose_headers: Sequence[str] = (),
) -> None:
    """Starlette's CORSMiddleware for ``origins`` (none: no CORS at all). Add it after every
    other middleware, so it is the outermost: preflights (which carry no key) are answered
    before auth, and every answer, 401s and 413s included, carries its headers."""
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=[*_ALLOW_HEADERS, *allow_headers],
        expose_headers=[*_EXPOSE_HEADERS, *expose_headers],
        max_age=600,
    )
