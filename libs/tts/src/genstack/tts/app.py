"""The ASGI app of a TTS server: the shared routes (``genstack.tts.routes``) plus a service's
own routers, behind genstack.http's edge (errors, auth, body limits, metrics, CORS)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from genstack.http.auth import ApiKeys
from genstack.http.cors import add_cors
from genstack.http.errors import install_error_handlers
from genstack.http.middleware import EdgeMiddleware, EdgePolicy, open_paths
from genstack.tts.engine import TTSEngine
from genstack.tts.routes import ops, speech, voices
from genstack.tts.server import TTSServer
from genstack.tts.settings import TTSSettings

# Room for the JSON or multipart framing around the text or audio a request carries.
_BODY_SLACK = 64 * 1024


def _edge_policy(settings: TTSSettings, upload_paths: Sequence[str]) -> EdgePolicy:
    keys = [key.get_secret_value() for key in settings.tts_api_keys]
    return EdgePolicy(
        keys=ApiKeys(keys) if keys else None,
        open_paths=open_paths(docs=settings.tts_public_docs, metrics=settings.tts_public_metrics),
        # UTF-8 is at most 4 bytes a character.
        default_body_limit=4 * settings.tts_max_input_chars + _BODY_SLACK,
        body_limits=[
            ("POST", path, settings.max_upload_bytes + _BODY_SLACK)
            for path in ("/v1/audio/voices", *upload_paths)
        ],
    )


def create_app(
    engine: TTSEngine,
    settings: TTSSettings,
    *,
    name: str,
    title: str,
    routers: Sequence[APIRouter] = (),
    upload_paths: Sequence[str] = (),
    default_format: str = "mp3",
    voice_aliases: Mapping[str, str] | None = None,
) -> FastAPI:
    """The ASGI app of one TTS server, with the shared routes and a service's ``routers``
    (which reach the server through ``genstack.tts.server.get_server``). The model loads in
    the background after start-up; /readyz answers 503 until it has. ``upload_paths``: a
    service's routes that take reference audio (the upload size limit, not the text's);
    ``default_format``, ``voice_aliases``: see TTSServer."""
    server = TTSServer(
        engine, settings, name=name, default_format=default_format, voice_aliases=voice_aliases
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        server.model_thread.start()
        loading = asyncio.create_task(server.load())
        try:
            yield
        finally:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await asyncio.to_thread(server.model_thread.stop)

    app = FastAPI(title=title, lifespan=lifespan)
    app.state.tts = server
    install_error_handlers(app)
    for router in (ops.router, speech.router, voices.router, *routers):
        app.include_router(router)
    app.add_middleware(
        EdgeMiddleware, policy=_edge_policy(settings, upload_paths), metrics=server.metrics
    )
    add_cors(
        app,
        settings.tts_cors_origins,
        allow_headers=["Cache-Control"],
        expose_headers=["X-Sample-Rate"],
    )
    return app
