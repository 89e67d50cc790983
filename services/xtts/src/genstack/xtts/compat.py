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

One module of a little over 300 lines: it is one client's protocol (its request models, its
per-client state and its routes), read top to bottom.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from genstack.http.errors import ApiError, validation_message
from genstack.tts.cache import LRUCache
from genstack.tts.engine import SynthesisParams
from genstack.tts.server import Server, TTSServer
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
    """The compatibility routes' state: each client's settings and the built-in voices'
    previews (kept on ``app.state.xtts_compat``, see :func:`get_compat`)."""

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
        return SynthesisParams.from_request(
            chosen,
            language=self.server.language(language),
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


def get_compat(request: Request) -> Compat:
    compat: Compat = request.app.state.xtts_compat
    return compat


CompatState = Annotated[Compat, Depends(get_compat)]

router = APIRouter(tags=["xtts-api-server"])


def _voice_entries(server: TTSServer, base: str) -> list[dict[str, str]]:
    ids = [*server.engine.builtin_voices(), *(v.id for v in server.library.list())]
    return [
        {
            "name": voice_id,
            "voice_id": voice_id,
            "preview_url": f"{base}/sample/{quote(voice_id)}.wav",
        }
        for voice_id in ids
    ]


@router.get("/speakers")
async def speakers(request: Request, server: Server, compat: CompatState) -> list[dict[str, str]]:
    return await asyncio.to_thread(_voice_entries, server, compat.base_url(request))


@router.get("/speakers_list")
async def speakers_list(request: Request, server: Server, compat: CompatState) -> list[str]:
    entries = await asyncio.to_thread(_voice_entries, server, compat.base_url(request))
    return [entry["voice_id"] for entry in entries]


@router.get("/languages")
async def languages(server: Server) -> dict[str, dict[str, str]]:
    codes = server.engine.languages
    return {"languages": {LANGUAGE_NAMES.get(code, code): code for code in codes}}


@router.get("/get_tts_settings")
async def get_tts_settings(request: Request, compat: CompatState) -> dict[str, Any]:
    return compat.settings_for(request).model_dump()


@router.post("/set_tts_settings")
async def set_tts_settings(request: Request, compat: CompatState) -> dict[str, str]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "the body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_value")
    current = compat.settings_for(request).model_dump()
    try:
        chosen = ClientTtsSettings.model_validate({**current, **body})
    except ValidationError as exc:
        message, param = validation_message(exc.errors())
        raise ApiError(400, message, code="invalid_value", param=param) from None
    compat.client_settings.put(_client_key(request), chosen)
    return {"message": "Settings successfully applied"}


async def _speak(
    request: Request,
    server: TTSServer,
    compat: Compat,
    body: SynthesisRequest,
    *,
    stream: bool,
) -> Response:
    started = time.monotonic()
    server.require_ready()  # built-in voices are known once the model is loaded
    text = server.check_text(clean_text(body.text), param="text")
    voice = server.resolve_voice(body.speaker_wav, param="speaker_wav")
    return await server.audio_response(
        text=text,
        voice=voice,
        params=compat.params(request, body.language),
        fmt="wav",
        stream=stream,
        started=started,
        filename="output",
    )


async def tts_to_audio(
    request: Request, body: SynthesisRequest, server: Server, compat: CompatState
) -> Response:
    return await _speak(request, server, compat, body, stream=False)


async def tts_stream_get(
    request: Request,
    server: Server,
    compat: CompatState,
    text: Annotated[str, Query(min_length=1)],
    speaker_wav: Annotated[str, Query(min_length=1, max_length=256)],
    language: Annotated[str, Query(max_length=16)] = "en",
) -> Response:
    body = SynthesisRequest(text=text, speaker_wav=speaker_wav, language=language)
    return await _speak(request, server, compat, body, stream=True)


async def tts_stream_post(
    request: Request, body: SynthesisRequest, server: Server, compat: CompatState
) -> Response:
    return await _speak(request, server, compat, body, stream=True)


# xtts-api-server's clients call these with and without the trailing slash.
for _path in ("/tts_to_audio/", "/tts_to_audio"):
    router.add_api_route(_path, tts_to_audio, methods=["POST"], response_class=Response)
for _path in ("/tts_stream", "/tts_stream/"):
    router.add_api_route(_path, tts_stream_get, methods=["GET"], response_class=Response)
    router.add_api_route(_path, tts_stream_post, methods=["POST"], response_class=Response)


@router.post("/tts_to_file")
async def tts_to_file(
    request: Request, body: SynthesisFileRequest, server: Server, compat: CompatState
) -> dict[str, str]:
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


@router.get("/sample/{name}", response_class=Response)
async def sample(name: str, server: Server, compat: CompatState) -> Response:
    """A voice's reference audio; for a built-in voice (which has none), a short sentence
    spoken in it, made once and kept."""
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
