"""The xtts model server: genstack.tts's API plus xtts-api-server's routes."""

from __future__ import annotations

from fastapi import FastAPI

from genstack.tts.app import TTSServer, create_app
from genstack.xtts.compat import install_compat_routes
from genstack.xtts.engine import XttsEngine
from genstack.xtts.settings import XttsSettings


def build_app(settings: XttsSettings, engine: XttsEngine | None = None) -> FastAPI:
    engine = engine or XttsEngine(
        settings.xtts_model_dir,
        device=settings.xtts_device,
        use_deepspeed=settings.xtts_deepspeed,
        stream_chunk_size=settings.xtts_stream_chunk_size,
    )

    def compat_routes(app: FastAPI, server: TTSServer) -> None:
        install_compat_routes(
            app,
            server,
            output_dir=settings.output_dir / "xtts",
            public_url=settings.xtts_public_url,
        )

    return create_app(
        engine, settings, name="xtts", title="genstack XTTS v2", extra_routes=compat_routes
    )
