"""The voice library: list, read, add (OpenAI's multipart upload) and delete voices."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from starlette.responses import Response

from genstack.http.errors import ApiError
from genstack.tts.server import Server
from genstack.tts.voices import STORE_RATE, VoiceLibraryError

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/audio/voices", tags=["voices"])


@router.get("")
async def list_voices(server: Server) -> dict[str, Any]:
    voices = await asyncio.to_thread(server.service.voices)
    return {"object": "list", "data": voices}


@router.get("/{voice_id}")
async def get_voice(voice_id: str, server: Server) -> dict[str, object]:
    voice = await asyncio.to_thread(server.resolve_voice, voice_id, "voice_id")
    if voice.kind == "builtin":
        return {"id": voice.id, "object": "audio.voice", "name": voice.name, "type": "builtin"}
    stored = await asyncio.to_thread(server.library.get, voice.id)
    return stored.to_api()


@router.get("/{voice_id}/sample", response_class=Response)
async def voice_sample(voice_id: str, server: Server) -> Response:
    voice = await asyncio.to_thread(server.resolve_voice, voice_id, "voice_id")
    if voice.kind != "library":
        raise ApiError(
            404,
            f"built-in voice {voice_id!r} has no reference audio",
            code="no_reference_audio",
            param="voice_id",
        )
    stored = await asyncio.to_thread(server.library.get, voice.id)
    data = await asyncio.to_thread(stored.path.read_bytes)
    return Response(data, media_type="audio/wav")


@router.post("", status_code=201)
async def create_voice(
    server: Server,
    name: Annotated[str | None, Form(max_length=256)] = None,
    audio_sample: Annotated[UploadFile | None, File()] = None,
    file: Annotated[UploadFile | None, File()] = None,
    consent: Annotated[str | None, Form(max_length=256)] = None,
    type: Annotated[str | None, Form(max_length=32)] = None,
    language: Annotated[str | None, Form(max_length=16)] = None,
) -> dict[str, object]:
    """Add a voice from reference audio (OpenAI's multipart form; ``consent`` is accepted
    and not checked). ``language``, where given, is what the voice speaks: requests with
    this voice that name no language are spoken in it."""
    if type not in (None, "audio_sample"):
        raise ApiError(
            400,
            "only voices from an audio sample can be made here",
            code="invalid_value",
            param="type",
        )
    spoken = server.language(language, param="language") if language else None
    upload = audio_sample or file
    if upload is None:
        raise ApiError(
            400,
            "send the reference audio as 'audio_sample' (or 'file')",
            code="missing_audio",
            param="audio_sample",
        )
    samples = await server.reference_audio(upload, param="audio_sample")
    label = (name or upload.filename or "voice").strip()[:256] or "voice"
    try:
        stored = await asyncio.to_thread(server.library.add, label, samples, language=spoken)
    except VoiceLibraryError as exc:
        raise ApiError(exc.status, str(exc), code="voice_library_full") from None
    seconds = samples.size / STORE_RATE
    log.info("voice added", extra={"voice_id": stored.id, "seconds": round(seconds, 2)})
    return stored.to_api()


@router.delete("/{voice_id}")
async def delete_voice(voice_id: str, server: Server) -> dict[str, object]:
    voice = await asyncio.to_thread(server.resolve_voice, voice_id, "voice_id")
    if voice.kind != "library":
        raise ApiError(
            400,
            f"built-in voice {voice_id!r} cannot be deleted",
            code="builtin_voice",
            param="voice_id",
        )
    await asyncio.to_thread(server.library.delete, voice.id)
    server.service.forget(voice.id)
    return {"id": voice.id, "object": "audio.voice.deleted", "deleted": True}
