"""OpenAI-compatible audio and model routes: /v1/audio/speech (proxied, streamed),
/v1/audio/voices (merged across backends), /v1/models."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response, StreamingResponse

from genstack.core.contracts.common import SafeName
from genstack.core.contracts.speech import SpeechFormat
from genstack.core.jobs import JobType
from genstack.gateway.backends import Backend
from genstack.gateway.proxy import proxy_post
from genstack.gateway.routes.common import JSON, errors, services
from genstack.gateway.services import Services
from genstack.http.errors import ApiError
from genstack.http.middleware import request_id_var

router = APIRouter(prefix="/v1", tags=["openai"])

MAX_VOICES_PER_BACKEND = 10_000


class OpenAIVoice(BaseModel):
    id: SafeName


class SpeechProxyRequest(BaseModel):
    """OpenAI's speech request; fields a backend adds (language, exaggeration, ...) pass
    through to it untouched."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=128)
    input: str = Field(min_length=1, description="Limited by GATEWAY_MAX_SPEECH_INPUT_CHARS.")
    voice: SafeName | OpenAIVoice = "default"
    response_format: SpeechFormat | None = None
    speed: float | None = Field(default=None, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] | None = None
    instructions: str | None = Field(default=None, max_length=4096)


class Voice(BaseModel):
    id: str
    name: str
    backend: str
    models: list[str]


class BackendStatus(BaseModel):
    name: str
    ready: bool
    voices: int = 0
    error: str | None = None


class VoiceList(BaseModel):
    object: str = "list"
    data: list[Voice]
    backends: list[BackendStatus]


class Model(BaseModel):
    id: str
    object: str = "model"
    created: int
    owned_by: str
    backend: str
    type: str


class ModelList(BaseModel):
    object: str = "list"
    data: list[Model]


def speech_backend(svc: Services, model: str) -> Backend:
    name = svc.registry.speech_models.get(model)
    backend = svc.registry.get(name) if name else None
    if backend is None or not backend.url:
        known = ", ".join(sorted(svc.registry.speech_models)) or "none"
        raise ApiError(
            404,
            f"The model `{model}` does not exist here (speech models: {known}).",
            code="model_not_found",
            param="model",
        )
    return backend


@router.post(
    "/audio/speech",
    summary="Create speech (OpenAI-compatible), streamed from the backend",
    response_class=StreamingResponse,
    responses=errors(
        400,
        401,
        404,
        413,
        502,
        503,
        504,
        extra={
            200: {"content": {"audio/*": {}}, "description": "The audio, streamed as it is made."}
        },
    ),
)
async def create_speech(
    request: Request, speech: Annotated[SpeechProxyRequest, Body()]
) -> Response:
    svc = services(request)
    raw = await request.body()  # forwarded as sent: backend-specific fields survive
    limit = svc.settings.gateway_max_speech_input_chars
    if len(speech.input) > limit:
        raise ApiError(
            400,
            f"input: {len(speech.input)} characters; the limit is {limit}",
            code="string_above_max_length",
            param="input",
        )
    backend = speech_backend(svc, speech.model)
    headers = {
        "content-type": "application/json",
        "accept": request.headers.get("accept", "*/*"),
        "x-request-id": request_id_var.get() or "",
    }
    return await proxy_post(
        svc.backend_http,
        backend=backend.name,
        url=f"{backend.url}/v1/audio/speech",
        body=raw,
        headers=headers,
        metrics=svc.metrics,
    )


def _voice_names(payload: Any) -> list[str]:
    """Voice names from the shapes model servers use: a list of names or of objects with
    id/name/voice_id, bare or under "data" or "voices"."""
    if isinstance(payload, dict):
        for key in ("data", "voices"):
            if isinstance(payload.get(key), list):
                payload = payload[key]
                break
    if not isinstance(payload, list):
        raise ValueError("the answer is not a list of voices")  # noqa: TRY004
    names: list[str] = []
    for item in payload[:MAX_VOICES_PER_BACKEND]:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict):
            name = item.get("id") or item.get("voice_id") or item.get("name")
            if isinstance(name, str):
                names.append(name)
    return names


async def _backend_voices(svc: Services, backend: Backend) -> tuple[BackendStatus, list[Voice]]:
    try:
        response = await svc.backend_http.get(
            f"{backend.url}/v1/audio/voices", timeout=svc.settings.gateway_voices_timeout_s
        )
        names = _voice_names(response.json()) if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        return BackendStatus(name=backend.name, ready=False, error=reason), []
    if names is None:
        error = f"HTTP {response.status_code}"
        return BackendStatus(name=backend.name, ready=False, error=error), []
    voices = [
        Voice(id=name, name=name, backend=backend.name, models=list(backend.models))
        for name in names
    ]
    return BackendStatus(name=backend.name, ready=True, voices=len(voices)), voices


@router.get(
    "/audio/voices",
    response_model=VoiceList,
    summary="Voices of every speech backend, with each backend's readiness",
    responses=errors(401),
)
async def list_voices(
    request: Request,
    backend: Annotated[str | None, Query(max_length=32, description="Only this backend.")] = None,
) -> Response:
    svc = services(request)
    backends = [b for b in svc.registry.speech_backends() if backend in (None, b.name)]
    results = await asyncio.gather(*(_backend_voices(svc, b) for b in backends))
    listing = VoiceList(
        data=[voice for _, voices in results for voice in voices],
        backends=[status for status, _ in results],
    )
    return Response(listing.model_dump_json(), media_type=JSON)


def _models(svc: Services) -> list[Model]:
    found: list[Model] = []
    for table, kind in ((svc.registry.speech_models, "tts"), (svc.registry.image_models, "image")):
        for model, backend in sorted(table.items()):
            found.append(
                Model(
                    id=model,
                    created=svc.started_at,
                    owned_by=f"genstack:{backend}",
                    backend=backend,
                    type=kind,
                )
            )
    for served in svc.registry.backends.values():  # job-only types (video, workflow)
        for job_type in sorted(served.types - {JobType.TTS, JobType.IMAGE}):
            found.append(
                Model(
                    id=f"{served.name}/{job_type.value}",
                    created=svc.started_at,
                    owned_by=f"genstack:{served.name}",
                    backend=served.name,
                    type=job_type.value,
                )
            )
    return found


@router.get(
    "/models", response_model=ModelList, summary="Models (OpenAI-compatible)", responses=errors(401)
)
async def list_models(request: Request) -> Response:
    listing = ModelList(data=_models(services(request)))
    return Response(listing.model_dump_json(), media_type=JSON)


@router.get(
    "/models/{model_id:path}",
    response_model=Model,
    summary="One model (OpenAI-compatible)",
    responses=errors(401, 404),
)
async def get_model(model_id: str, request: Request) -> Response:
    for model in _models(services(request)):
        if model.id == model_id:
            return Response(model.model_dump_json(), media_type=JSON)
    raise ApiError(404, f"The model `{model_id}` does not exist", code="model_not_found")
