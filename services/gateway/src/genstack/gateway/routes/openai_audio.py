"""OpenAI-compatible audio and model routes: /v1/audio/speech, /v1/audio/voices (merged
across backends), /v1/models.

Speech from a model server (xtts, chatterbox) is proxied and streams as it is made. Speech
from ComfyUI (``model: vibevoice``, or a tts template's name) is a `tts` job: the gateway
queues it, waits up to GATEWAY_SPEECH_WAIT_S and answers the whole file (not streamed), in
one of the formats ComfyUI saves (mp3, opus, flac)."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.background import BackgroundTask
from starlette.responses import FileResponse, Response, StreamingResponse

from genstack.core.contracts.comfyui import VIBEVOICE_FORMATS, InputFile
from genstack.core.contracts.common import SafeName
from genstack.core.contracts.speech import SpeechFormat
from genstack.core.jobs import JobType
from genstack.core.storage import Storage
from genstack.gateway.backends import Backend
from genstack.gateway.proxy import proxy_post
from genstack.gateway.routes.common import JSON, errors, services, succeeded_job
from genstack.gateway.routes.jobs import (
    IdempotencyKey,
    check_templates,
    input_resolver,
    submit_with_inputs,
    templated,
    validated_params,
)
from genstack.gateway.services import Services
from genstack.http.errors import ApiError
from genstack.http.middleware import request_id_var

router = APIRouter(prefix="/v1", tags=["openai"])

MAX_VOICES_PER_BACKEND = 10_000
_VOICE_NAME: TypeAdapter[str] = TypeAdapter(SafeName)


class OpenAIVoice(BaseModel):
    id: SafeName


class SpeechProxyRequest(BaseModel):
    """OpenAI's speech request; fields a backend adds (language, exaggeration, ...) pass
    through to it untouched."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=128)
    input: str = Field(min_length=1, description="Limited by GATEWAY_MAX_SPEECH_INPUT_CHARS.")
    voice: SafeName | OpenAIVoice | InputFile = Field(
        default="default",
        description="A voice name; for vibevoice also the http(s) URL of a voice sample.",
    )
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
    streaming: bool | None = Field(
        default=None,
        description="Speech models: whether /v1/audio/speech streams the audio as it is made "
        "(false: a job, answered whole when it is done).",
    )
    response_formats: list[str] | None = Field(
        default=None, description="Speech models: the response_format values taken, if limited."
    )


class ModelList(BaseModel):
    object: str = "list"
    data: list[Model]


def speech_job(backend: Backend) -> bool:
    """Whether the backend's speech is a job (ComfyUI's VibeVoice), not a proxied stream."""
    return templated(backend, JobType.TTS)


async def speech_target(svc: Services, model: str) -> tuple[Backend, str | None]:
    """The backend ``model`` names, and the tts template when it is a template's name."""
    registry = svc.registry
    name = registry.speech_models.get(model)
    backend = registry.get(name) if name else None
    if backend is not None and (backend.url or speech_job(backend)):
        return backend, None
    templates = await svc.templates.templates() if backend is None else None
    template = templates.get(model) if templates is not None else None
    jobs = [b for b in registry.backends.values() if speech_job(b)]
    if template is not None and template.type == JobType.TTS and jobs:
        return jobs[0], template.name
    known = sorted(registry.speech_models)
    if templates is not None:
        known += sorted(t.name for t in templates.values() if t.type == JobType.TTS)
    raise ApiError(
        404,
        f"The model `{model}` does not exist here (speech models: {', '.join(known) or 'none'}).",
        code="model_not_found",
        param="model",
    )


def speech_param(param: str) -> str:
    """The request field a 400 names, from the job's param (the templates call the text
    ``text``; the request, like OpenAI's, ``input``)."""
    if param in ("params.text", "params.input"):
        return "input"
    if param == "params.template":
        return "model"
    return param.removeprefix("params.")


def _audio_file(storage: Storage, key: str) -> str:
    fd, path = tempfile.mkstemp(prefix="genstack-speech-")
    os.close(fd)
    try:
        storage.download(key, path)
    except BaseException:
        os.unlink(path)
        raise
    return path


# Fields of OpenAI's request that a speech job has no use for.
_NOT_JOB_PARAMS = ("model", "stream_format", "instructions")


async def _speech_from_job(
    svc: Services,
    request: Request,
    speech: SpeechProxyRequest,
    backend: Backend,
    template: str | None,
    idempotency_key: str | None,
) -> Response:
    """ComfyUI's speech: a `tts` job, awaited, its audio file answered whole."""
    if speech.stream_format == "sse":
        raise ApiError(
            400,
            f"{speech.model} does not stream: the audio is answered whole when the job is done",
            code="unsupported_stream_format",
            param="stream_format",
        )
    if speech.response_format is not None and speech.response_format not in VIBEVOICE_FORMATS:
        raise ApiError(
            400,
            f"{speech.model} answers {', '.join(VIBEVOICE_FORMATS)} (what ComfyUI saves), "
            f"not {speech.response_format}",
            code="unsupported_response_format",
            param="response_format",
        )
    sent = speech.model_dump(mode="json", exclude_none=True)
    values = {k: v for k, v in sent.items() if k not in _NOT_JOB_PARAMS}
    if "voice" not in speech.model_fields_set:
        values.pop("voice", None)  # the template's own default voice
    elif isinstance(speech.voice, OpenAIVoice):
        values["voice"] = speech.voice.id
    if template is not None:
        values["template"] = template
    params = validated_params(backend, JobType.TTS, values, speech_param)
    await check_templates(svc, backend, JobType.TTS, params, speech_param)
    submission = await submit_with_inputs(
        svc,
        request,
        input_resolver(svc, request, speech_param),
        job_type=JobType.TTS,
        backend=backend,
        params=params,
        webhook_url=None,
        idempotency_key=idempotency_key,
        fingerprint_body=sent,
    )
    job_id = submission.job.id
    job = await succeeded_job(svc, job_id, svc.settings.gateway_speech_wait_s, "speech")
    audio = next((a for a in job.artifacts if a.content_type.startswith("audio/")), None)
    if audio is None:
        raise ApiError(
            502,
            f"speech job {job_id} made no audio file",
            code="bad_output",
            headers={"X-Genstack-Job-Id": job_id},
        )
    path = await svc.run_sync(_audio_file, svc.storage, audio.key)
    return FileResponse(
        path,
        media_type=audio.content_type,
        headers={"X-Genstack-Job-Id": job_id, "X-Genstack-Backend": backend.name},
        background=BackgroundTask(os.unlink, path),
    )


@router.post(
    "/audio/speech",
    summary="Create speech (OpenAI-compatible): streamed from a model server, or a job",
    description="xtts and chatterbox stream the audio as it is made. vibevoice (and ComfyUI's "
    "tts templates by name) run a `tts` job and answer the whole file when it is done "
    "(response_format mp3, opus or flac).",
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
    request: Request,
    speech: Annotated[SpeechProxyRequest, Body()],
    idempotency_key: IdempotencyKey = None,
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
    backend, template = await speech_target(svc, speech.model)
    if speech_job(backend):
        return await _speech_from_job(svc, request, speech, backend, template, idempotency_key)
    if isinstance(speech.voice, str):  # a model server takes names, never URLs or paths
        try:
            _VOICE_NAME.validate_python(speech.voice)
        except ValidationError:
            raise ApiError(
                400,
                f"voice must be a voice name of {speech.model} (got {speech.voice!r})",
                code="invalid_value",
                param="voice",
            ) from None
    if speech.response_format is None:
        # OpenAI's default; a model server may default otherwise (chatterbox: WAV, as
        # chatterbox-tts-api does for its own clients).
        body = json.loads(raw)
        body["response_format"] = "mp3"
        raw = json.dumps(body).encode()
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
            speech: dict[str, Any] = {}
            if kind == "tts":
                job = speech_job(svc.registry.backends[backend])
                speech["streaming"] = not job
                speech["response_formats"] = list(VIBEVOICE_FORMATS) if job else None
            found.append(
                Model(
                    id=model,
                    created=svc.started_at,
                    owned_by=f"genstack:{backend}",
                    backend=backend,
                    type=kind,
                    **speech,
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
    return Response(listing.model_dump_json(exclude_none=True), media_type=JSON)


@router.get(
    "/models/{model_id:path}",
    response_model=Model,
    summary="One model (OpenAI-compatible)",
    responses=errors(401, 404),
)
async def get_model(model_id: str, request: Request) -> Response:
    for model in _models(services(request)):
        if model.id == model_id:
            return Response(model.model_dump_json(exclude_none=True), media_type=JSON)
    raise ApiError(404, f"The model `{model_id}` does not exist", code="model_not_found")
