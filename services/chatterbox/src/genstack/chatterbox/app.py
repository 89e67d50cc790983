"""The chatterbox model server: genstack.tts's API plus chatterbox-tts-api's routes."""

from __future__ import annotations

from fastapi import FastAPI

from genstack.chatterbox import compat
from genstack.chatterbox.engine import DEFAULT_VOICE, ChatterboxEngine
from genstack.chatterbox.settings import ChatterboxSettings
from genstack.tts.app import create_app

# chatterbox-tts-api speaks OpenAI's six voice names in the default voice (where the library
# has no voice by that name); its clients (Open WebUI) send them.
OPENAI_VOICES = ("alloy", "echo", "fable", "onyx", "nova", "shimmer")


def build_app(settings: ChatterboxSettings, engine: ChatterboxEngine | None = None) -> FastAPI:
    engine = engine or ChatterboxEngine(
        settings.chatterbox_model_dir,
        variant=settings.chatterbox_model,
        device=settings.chatterbox_device,
    )
    return create_app(
        engine,
        settings,
        name="chatterbox",
        title="genstack Chatterbox",
        routers=[compat.router],
        upload_paths=compat.UPLOAD_PATHS,
        # chatterbox-tts-api answers WAV when a request names no format; the gateway asks
        # for OpenAI's mp3 itself.
        default_format="wav",
        voice_aliases=dict.fromkeys(OPENAI_VOICES, DEFAULT_VOICE),
    )
