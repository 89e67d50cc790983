"""The xtts model server: genstack.tts's API plus xtts-api-server's routes."""

from __future__ import annotations

from fastapi import FastAPI

from genstack.tts.app import create_app
from genstack.xtts import compat
from genstack.xtts.engine import XttsEngine
from genstack.xtts.settings import XttsSettings


def build_app(settings: XttsSettings, engine: XttsEngine | None = None) -> FastAPI:
    engine = engine or XttsEngine(
        settings.xtts_model_dir,
        device=settings.xtts_device,
        use_deepspeed=settings.xtts_deepspeed,
        stream_chunk_size=settings.xtts_stream_chunk_size,
    )
    app = create_app(
        engine, settings, name="xtts", title="genstack XTTS v2", routers=[compat.router]
    )
    app.state.xtts_compat = compat.Compat(
        app.state.tts, output_dir=settings.output_dir / "xtts", public_url=settings.xtts_public_url
    )
    return app
