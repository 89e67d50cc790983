"""OpenAI's speech API: POST /v1/audio/speech and GET /v1/models."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from genstack.core.contracts.speech import OPENAI_TTS_ALIASES
from genstack.http.errors import ApiError
from genstack.tts.engine import SynthesisParams
from genstack.tts.schemas import SpeechRequest
from genstack.tts.server import Server

router = APIRouter(tags=["openai"])


@router.get("/v1/models")
async def models(server: Server) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": model_id, "object": "model", "created": 0, "owned_by": "genstack"}
            for model_id in server.engine.model_ids
        ],
    }


@router.post("/v1/audio/speech", response_class=Response)
async def speech(request: SpeechRequest, server: Server) -> Response:
    started = time.monotonic()
    served = server.engine.model_ids
    if request.model is not None and request.model not in (*served, *OPENAI_TTS_ALIASES):
        raise ApiError(
            404,
            f"model {request.model!r} is not served here; this server has {', '.join(served)}",
            code="model_not_found",
            param="model",
        )
    server.require_ready()  # built-in voices are known once the model is loaded
    text = server.check_text(request.input)
    voice = server.resolve_voice(request.voice_id)
    params = SynthesisParams.from_request(
        request,
        language=server.language(request.language, voice),
        extra=server.engine_params(request.model_extra or {}),
    )
    return await server.audio_response(
        text=text,
        voice=voice,
        params=params,
        fmt=request.response_format or server.default_format,
        stream=request.stream or request.stream_format == "sse",
        sse=request.stream_format == "sse",
        started=started,
    )
