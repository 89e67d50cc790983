"""xtts-api-server's routes, so its clients (SillyTavern's XTTS provider above all) work
unchanged, without its flaws:

- voices and files resolve only inside their folders: ``speaker_wav`` is a voice id (a name
  or ``name.wav``), never a path; ``tts_to_file`` writes only under OUTPUT_DIR/xtts;
- generation settings are per client (by address), not global: one user's
  ``/set_tts_settings`` does not change another's speech;
- inference runs on the model thread (no blocking of the event loop, no voice mixing);
- ``/tts_stream`` is a real streamed WAV from the first byte, for a plain GET with query
  parameters (what an ``<audio>`` element does), with and without the trailing slash.

Not provided, on purpose: /set_output, /set_speaker_folder, /switch_model, /get_folders and
/get_models_list (they let a client point the server at arbitrary folders).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from genstack.tts.app import TTSServer
from genstack.tts.cache import LRUCache
from genstack.tts.engine import SynthesisParams
from genstack.tts.errors import ApiError
from genstack.xtts.engine import LANGUAGE_NAMES, XttsParams

# A relative file name: path segments of safe characters, no "." or ".." segments.
_SAFE_NAME = re.compile(
    r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}/){0,4}[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$"
)
_OUTPUT_FORMATS = ("wav", "mp3", "flac", "opus", "aac")
PREVIEW_TEXT = "Hello! This is how I sound when I read your messages aloud."


class ClientTtsSettings(BaseModel):
    """What /set_tts_settings takes, with xtts-api-server's ranges. Strings are accepted as
    SillyTavern sends them ("0.75", "100", true)."""

    model_config = ConfigDict(extra="ignore")

    stream_chunk_size: int = Field(default=100, ge=20, le=400)
    temperature: float = Field(default=0.75, ge=0.01, le=1.0)
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    length_penalty: float = Field(default=1.0, ge=-10.0, le=10.0)
    repetition_penalty: float = Field(default=5.0, ge=0.1, le=10.0)
    top_p: float = Field(default=0.85, ge=0.01, le=1.0)
    top_k: int = Field(default=50, ge=1, le=100)
    enable_text_splitting: bool = True

    @field_validator("stream_chunk_size", "top_k", mode="before")
    @classmethod
    def _whole_number(cls, value: object) -> object:
        # "50.0" from a slider is still 50.
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return value
            if number.is_integer():
                return int(number)
        return value


class SynthesisRequest(BaseModel):
    text: str = Field(min_length=1)
    speaker_wav: str = Field(min_length=1, max_length=256)
    language: str = Field(default="en", max_length=16)


class SynthesisFileRequest(SynthesisRequest):
    file_name_or_path: str = Field(min_length=1, max_length=512)


def clean_text(text: str) -> str:
    """As xtts-api-server does: drop asterisks (role-play *actions*) and line breaks."""
    return re.sub(r"[*\r\n]+", " ", text)


class Compat:
    def __init__(self, server: TTSServer, *, output_dir: Path, public_url: str | None) -> None:
        self.server = server
        self.output_dir = output_dir
        self.public_url = public_url.rstrip("/") if public_url else None
        self.client_settings: LRUCache[str, ClientTtsSettings] = LRUCache(1024)
        self.previews: LRUCache[str, bytes] = LRUCache(32)

    def settings_for(self, request: Request) -> ClientTtsSettings:
        return self.client_settings.get(_client_key(request)) or ClientTtsSettings()

    def params(self, request: Request, language: str) -> SynthesisParams:
        chosen = self.settings_for(request)
        return SynthesisParams(
            language=self.server.language(language),
            speed=chosen.speed,
            temperature=chosen.temperature,
            top_p=chosen.top_p,
            top_k=chosen.top_k,
            repetition_penalty=chosen.repetition_penalty,
            length_penalty=chosen.length_penalty,
            extra=XttsParams(stream_chunk_size=min(chosen.stream_chunk_size, 400)),
        )

    def base_url(self, request: Request) -> str:
        return self.public_url or str(request.base_url).rstrip("/")

    def output_path(self, name: str) -> Path:
        """The file ``name`` names inside the output folder; anything else is a 400."""
        if not _SAFE_NAME.match(name) or any(part in (".", "..") for part in name.split("/")):
            raise ApiError(
                400,
                "file_name_or_path must be a relative file name inside the output folder "
                "(letters, digits, '_', '-', '.'; no absolute paths or '..')",
                param="file_name_or_path",
            )
        root = self.output_dir.resolve()
        path = (root / name).resolve()
        if root not in path.parents:
            raise ApiError(
                400, "file_name_or_path leaves the output folder", param="file_name_or_path"
            )
        if path.suffix.lower().lstrip(".") not in _OUTPUT_FORMATS:
            path = path.with_name(path.name + ".wav")
        return path


def _client_key(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tts-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def install_compat_routes(
    app: FastAPI, server: TTSServer, *, output_dir: Path, public_url: str | None
) -> Compat:
    compat = Compat(server, output_dir=output_dir, public_url=public_url)
    tags: list[str | Enum] = ["xtts-api-server"]

    def voice_entries(request: Request) -> list[dict[str, str]]:
        base = compat.base_url(request)
        ids = [*server.engine.builtin_voices(), *(v.id for v in server.library.list())]
        return [
            {
                "name": voice_id,
                "voice_id": voice_id,
                "preview_url": f"{base}/sample/{quote(voice_id)}.wav",
            }
            for voice_id in ids
        ]

    @app.get("/speakers", tags=tags)
    async def speakers(request: Request) -> list[dict[str, str]]:
        return await asyncio.to_thread(voice_entries, request)

    @app.get("/speakers_list", tags=tags)
    async def speakers_list(request: Request) -> list[str]:
        return [entry["voice_id"] for entry in await asyncio.to_thread(voice_entries, request)]

    @app.get("/languages", tags=tags)
    async def languages() -> dict[str, dict[str, str]]:
        codes = server.engine.languages
        return {"languages": {LANGUAGE_NAMES.get(code, code): code for code in codes}}

    @app.get("/get_tts_settings", tags=tags)
    async def get_tts_settings(request: Request) -> dict[str, Any]:
        return compat.settings_for(request).model_dump()

    @app.post("/set_tts_settings", tags=tags)
    async def set_tts_settings(request: Request) -> dict[str, str]:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(422, "the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise ApiError(422, "the body must be a JSON object")
        current = compat.settings_for(request).model_dump()
        try:
            chosen = ClientTtsSettings.model_validate({**current, **body})
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(p) for p in first.get("loc", ()))
            raise ApiError(422, f"{param}: {first.get('msg')}", param=param) from None
        compat.client_settings.put(_client_key(request), chosen)
        return {"message": "Settings successfully applied"}

    async def speak(
        request: Request, text: str, speaker_wav: str, language: str, *, stream: bool
    ) -> Response:
        started = time.monotonic()
        server.require_ready()  # built-in voices are known once the model is loaded
        cleaned = server.check_text(clean_text(text), param="text")
        voice = server.resolve_voice(speaker_wav, param="speaker_wav")
        params = compat.params(request, language)
        return await server.audio_response(
            text=cleaned,
            voice=voice,
            params=params,
            fmt="wav",
            stream=stream,
            started=started,
            filename="output",
        )

    async def tts_to_audio(request: Request, body: SynthesisRequest) -> Response:
        return await speak(request, body.text, body.speaker_wav, body.language, stream=False)

    for path in ("/tts_to_audio/", "/tts_to_audio"):
        app.add_api_route(path, tts_to_audio, methods=["POST"], tags=tags, response_class=Response)

    async def tts_stream_get(
        request: Request,
        text: Annotated[str, Query(min_length=1)],
        speaker_wav: Annotated[str, Query(min_length=1, max_length=256)],
        language: Annotated[str, Query(max_length=16)] = "en",
    ) -> Response:
        return await speak(request, text, speaker_wav, language, stream=True)

    async def tts_stream_post(request: Request, body: SynthesisRequest) -> Response:
        return await speak(request, body.text, body.speaker_wav, body.language, stream=True)

    for path in ("/tts_stream", "/tts_stream/"):
        app.add_api_route(path, tts_stream_get, methods=["GET"], tags=tags, response_class=Response)
        app.add_api_route(
            path, tts_stream_post, methods=["POST"], tags=tags, response_class=Response
        )

    @app.post("/tts_to_file", tags=tags)
    async def tts_to_file(request: Request, body: SynthesisFileRequest) -> dict[str, str]:
        path = compat.output_path(body.file_name_or_path)
        started = time.monotonic()
        server.require_ready()
        text = server.check_text(clean_text(body.text), param="text")
        voice = server.resolve_voice(body.speaker_wav, param="speaker_wav")
        response = await server.audio_response(
            text=text,
            voice=voice,
            params=compat.params(request, body.language),
            fmt=path.suffix.lstrip(".").lower(),
            stream=False,
            started=started,
        )
        await asyncio.to_thread(_atomic_write, path, bytes(response.body))
        return {
            "message": "The audio was successfully made and stored.",
            "output_path": str(path),
        }

    @app.get("/sample/{name}", tags=tags, response_class=Response)
    async def sample(request: Request, name: str) -> Response:
        """A voice's reference audio; for a built-in voice (which has none), a short
        sentence spoken in it, made once and kept."""
        server.require_ready()
        voice = server.resolve_voice(name, param="name")
        if voice.kind == "library":
            data = await asyncio.to_thread(server.library.get(voice.id).path.read_bytes)
            return Response(data, media_type="audio/wav")
        cached = compat.previews.get(voice.id)
        if cached is None:
            response = await server.audio_response(
                text=PREVIEW_TEXT,
                voice=voice,
                params=SynthesisParams(language=server.engine.languages[0], seed=0),
                fmt="wav",
                stream=False,
                started=time.monotonic(),
            )
            cached = bytes(response.body)
            compat.previews.put(voice.id, cached)
        return Response(cached, media_type="audio/wav")

    return compat
