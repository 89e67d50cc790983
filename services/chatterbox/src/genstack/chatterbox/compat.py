"""chatterbox-tts-api's routes (travisvn/chatterbox-tts-api 2.x), where they differ from
genstack.tts's, so a client of that container works unchanged against this server:

- speech at its paths (/audio/speech, /tts), its streamed WAV route (/audio/speech/stream)
  and the multipart ``/audio/speech/upload`` variants that clone a ``voice_file`` sent with
  the request (decoded and checked like a library upload, never stored, never a path);
- its voice library (/voices: list, upload under a chosen name, get, download, delete,
  default) over the shared library, so voices are the same for every route;
- /languages, /health (also /status), /ping, /models and /config.

Where it is unsafe or loose this server is not: a voice name is a voice id (letters,
digits, '_', '-'), never a file name; errors are 4xx in OpenAI's shape naming the field
(its clients only check for a non-2xx status); an unknown voice is a 404, not the default.
Not provided: voice aliases and renames, /voices/cleanup, long-text jobs, the status,
memory and endpoint-listing routes (operations are /metrics and /readyz here).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse, Response

from genstack.chatterbox.engine import DEFAULT_VOICE, LANGUAGE_NAMES
from genstack.http.errors import ApiError, validation_message
from genstack.tts.engine import SynthesisParams
from genstack.tts.routes.speech import models as openai_models
from genstack.tts.routes.speech import speech as openai_speech
from genstack.tts.schemas import SpeechRequest, VoiceId
from genstack.tts.server import Server, TTSServer
from genstack.tts.synthesis import ResolvedVoice
from genstack.tts.voices import StoredVoice, VoiceLibraryError, is_valid_voice_id

router = APIRouter(tags=["chatterbox-tts-api"])

_SPEECH_UPLOAD = ("/v1/audio/speech/upload", "/audio/speech/upload", "/tts/upload")
_STREAM_UPLOAD = (
    "/v1/audio/speech/stream/upload",
    "/audio/speech/stream/upload",
    "/tts/stream/upload",
)
_VOICES = ("/voices", "/v1/voices", "/voice-library", "/voice_library")
UPLOAD_PATHS = (*_SPEECH_UPLOAD, *_STREAM_UPLOAD, *_VOICES)


# speech -------------------------------------------------------------------------------------
class CompatSpeechRequest(SpeechRequest):
    """Its speech request: ``voice`` may be left out (its default, "alloy", is the default
    voice)."""

    voice: str | VoiceId = DEFAULT_VOICE


async def compat_speech(request: CompatSpeechRequest, server: Server) -> Response:
    return await openai_speech(request, server)


async def speech_stream(request: CompatSpeechRequest, server: Server) -> Response:
    """Its /audio/speech/stream: audio as it is made, WAV unless the request says."""
    streamed = request.model_copy(update={"stream": True, "stream_format": "audio"})
    return await openai_speech(streamed, server)


for _path in ("/audio/speech", "/tts"):
    router.add_api_route(_path, compat_speech, methods=["POST"], response_class=Response)
for _path in ("/v1/audio/speech/stream", "/audio/speech/stream", "/tts/stream"):
    router.add_api_route(_path, speech_stream, methods=["POST"], response_class=Response)


async def _form(request: Request) -> tuple[dict[str, str], UploadFile | None]:
    """The multipart form: its text fields, and ``voice_file`` if sent (one file at most)."""
    try:
        form = await request.form(max_files=1, max_fields=64)
    except Exception as exc:  # starlette's MultiPartException and malformed bodies
        raise ApiError(400, f"the body is not a valid form: {exc}", code="invalid_form") from None
    fields: dict[str, str] = {}
    upload: UploadFile | None = None
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key != "voice_file":
                raise ApiError(400, f"unexpected file field {key!r}", param=key)
            upload = value
        else:
            fields[key] = value
    return fields, upload


async def _speech_upload(request: Request, server: TTSServer, *, stream: bool | None) -> Response:
    started = time.monotonic()
    fields, upload = await _form(request)
    try:
        body = CompatSpeechRequest.model_validate(fields)
    except ValidationError as exc:
        message, param = validation_message(exc.errors())
        raise ApiError(400, message, code="invalid_value", param=param) from None
    server.require_ready()
    text = server.check_text(body.input)
    if upload is not None:  # the file wins over `voice`, as there
        rate = server.engine.reference_sample_rate
        samples = await server.reference_audio(upload, param="voice_file", rate=rate)
        digest = hashlib.sha256(samples.tobytes()).hexdigest()[:24]
        voice = ResolvedVoice("upload", f"upload-{digest}", "voice_file", audio=samples)
    else:
        voice = server.resolve_voice(body.voice_id)
    params = SynthesisParams.from_request(
        body,
        language=server.language(body.language, voice),
        extra=server.engine_params(body.model_extra or {}),
    )
    sse = stream is None and body.stream_format == "sse"
    return await server.audio_response(
        text=text,
        voice=voice,
        params=params,
        fmt=body.response_format or server.default_format,
        stream=sse or (body.stream if stream is None else stream),
        sse=sse,
        started=started,
    )


async def speech_upload(request: Request, server: Server) -> Response:
    return await _speech_upload(request, server, stream=None)


async def speech_stream_upload(request: Request, server: Server) -> Response:
    return await _speech_upload(request, server, stream=True)


for _path in _SPEECH_UPLOAD:
    router.add_api_route(_path, speech_upload, methods=["POST"], response_class=Response)
for _path in _STREAM_UPLOAD:
    router.add_api_route(_path, speech_stream_upload, methods=["POST"], response_class=Response)


# voice library ------------------------------------------------------------------------------
def voice_info(voice: StoredVoice) -> dict[str, Any]:
    """Its voice metadata object (no server path: ``path`` is the file's name)."""
    stat = voice.path.stat()
    return {
        "name": voice.id,
        "filename": voice.path.name,
        "original_filename": voice.name,
        "file_extension": ".wav",
        "file_size": stat.st_size,
        "upload_date": datetime.fromtimestamp(voice.created_at, UTC).isoformat(),
        "path": voice.path.name,
        "language": voice.language or "en",
        "aliases": [],
        "exists": True,
    }


def _library_voice(server: TTSServer, name: str) -> StoredVoice:
    voice = server.resolve_voice(name, param="voice_name")
    if voice.kind != "library":
        raise ApiError(404, f"voice {name!r} is not in the voice library", code="voice_not_found")
    return server.library.get(voice.id)


async def list_voices(server: Server) -> dict[str, Any]:
    def listing() -> list[dict[str, Any]]:
        voices = [voice_info(v) for v in server.library.list()]
        return sorted(voices, key=lambda v: str(v["upload_date"]), reverse=True)

    voices = await asyncio.to_thread(listing)
    return {"voices": voices, "count": len(voices)}


async def upload_voice(request: Request, server: Server) -> Response:
    fields, upload = await _form(request)
    name = fields.get("voice_name", "").strip()
    if not is_valid_voice_id(name):
        raise ApiError(
            400,
            "voice_name must be 1-64 letters, digits, '_' or '-' (no paths or file names)",
            code="invalid_value",
            param="voice_name",
        )
    if upload is None:
        raise ApiError(400, "send the reference audio as 'voice_file'", param="voice_file")
    named = fields.get("language") or None  # stored only when named: see Server.language
    language = server.language(named, param="language") if named else None
    samples = await server.reference_audio(upload, param="voice_file")
    try:
        stored = await asyncio.to_thread(
            server.library.add, name, samples, voice_id=name, language=language
        )
    except VoiceLibraryError as exc:
        code = "voice_exists" if exc.status == 409 else "invalid_voice"
        raise ApiError(exc.status, str(exc), code=code, param="voice_name") from None
    info = voice_info(stored)
    body = {
        "message": "Voice uploaded successfully",
        "voice": {key: info[key] for key in ("name", "filename", "file_size", "upload_date")}
        | {"language": language or server.language(None)},
    }
    return JSONResponse(body, status_code=201)


async def default_voice(server: Server) -> dict[str, Any]:
    server.require_ready()
    builtin = DEFAULT_VOICE in server.engine.builtin_voices()
    return {
        "default_voice": DEFAULT_VOICE if builtin else None,
        "source": "builtin",
        "path": None,
    }


async def get_voice(voice_name: str, server: Server) -> dict[str, Any]:
    voice = await asyncio.to_thread(_library_voice, server, voice_name)
    return {"voice": await asyncio.to_thread(voice_info, voice)}


async def download_voice(voice_name: str, server: Server) -> Response:
    voice = await asyncio.to_thread(_library_voice, server, voice_name)
    data = await asyncio.to_thread(voice.path.read_bytes)
    return Response(
        data,
        media_type="audio/wav",
        headers={"Content-Disposition": f'attachment; filename="{voice.path.name}"'},
    )


async def delete_voice(voice_name: str, server: Server) -> dict[str, Any]:
    voice = await asyncio.to_thread(_library_voice, server, voice_name)
    await asyncio.to_thread(server.library.delete, voice.id)
    server.service.forget(voice.id)
    return {"message": "Voice deleted successfully", "voice_name": voice.id}


for _path in _VOICES:
    router.add_api_route(_path, list_voices, methods=["GET"])
    router.add_api_route(_path, upload_voice, methods=["POST"], response_class=Response)
# Before /voices/{voice_name}, which would take "default" as a name.
for _path in ("/voices/default", "/v1/voices/default", "/default-voice"):
    router.add_api_route(_path, default_voice, methods=["GET"])
for _prefix in ("/voices", "/v1/voices"):
    router.add_api_route(_prefix + "/{voice_name}", get_voice, methods=["GET"])
    router.add_api_route(_prefix + "/{voice_name}", delete_voice, methods=["DELETE"])
    router.add_api_route(
        _prefix + "/{voice_name}/download",
        download_voice,
        methods=["GET"],
        response_class=Response,
    )


# models, languages, health --------------------------------------------------------------
router.add_api_route("/models", openai_models, methods=["GET"])


@router.get("/languages")
async def languages(server: Server) -> dict[str, Any]:
    codes = list(server.engine.languages)
    return {
        "languages": [{"code": code, "name": LANGUAGE_NAMES.get(code, code)} for code in codes],
        "count": len(codes),
        "model_type": "multilingual" if len(codes) > 1 else "standard",
    }


async def health(server: Server) -> dict[str, Any]:
    """Its health answer, always 200 (its container health check polls it)."""
    if server.ready:
        status, state = "healthy", "ready"
    elif server.load_error:
        status, state = "error", "error"
    else:
        status, state = "initializing", "initializing"
    settings = server.settings
    return {
        "status": status,
        "model_loaded": server.ready,
        "device": getattr(server.engine, "device", "unknown") if server.ready else "unknown",
        "config": {
            "max_chunk_length": server.engine.max_chunk_chars("en"),
            "max_total_length": settings.tts_max_input_chars,
            "default_exaggeration": 0.5,
            "default_cfg_weight": 0.5,
            "default_temperature": 0.8,
        },
        "initialization_state": state,
        "initialization_error": server.load_error,
    }


for _path in ("/health", "/v1/health", "/status"):
    router.add_api_route(_path, health, methods=["GET"])


@router.get("/ping")
async def ping() -> dict[str, str]:
    return {"status": "ok", "message": "Server is running"}
