"""The HTTP surface every TTS server shares: OpenAI's /v1/audio/speech, the voice library,
health, readiness and metrics. A service passes its engine (and extra routes) to
:func:`create_app`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, UploadFile
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import Receive, Scope, Send

from genstack.tts.audio import (
    FORMATS,
    AudioDecodeError,
    AudioTooLongError,
    ResponseFormat,
    decode_audio,
)
from genstack.tts.engine import EngineError, SynthesisParams, TTSEngine
from genstack.tts.errors import ApiError, install_error_handlers
from genstack.tts.gpu import GpuRunner, ModelBusyError
from genstack.tts.metrics import TTSMetrics
from genstack.tts.middleware import BearerAuthMiddleware, BodyLimitMiddleware, MetricsMiddleware
from genstack.tts.settings import TTSSettings
from genstack.tts.synthesis import AudioPipeline, SentenceEnd, SpeechService, VoiceRef
from genstack.tts.voices import STORE_RATE, VoiceLibrary, VoiceLibraryError

log = logging.getLogger(__name__)

# Model names OpenAI clients send by habit; each TTS server answers them with its own model.
OPENAI_MODEL_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
_JSON_SLACK = 64 * 1024


class VoiceId(BaseModel):
    id: str = Field(min_length=1, max_length=256)


class SpeechRequest(BaseModel):
    """OpenAI's request plus engine fields; fields of the engine's own are validated by the
    engine, others are ignored (as OpenAI clients add fields of newer API versions)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(default=None, max_length=200)
    input: str = Field(min_length=1)
    voice: str | VoiceId
    response_format: ResponseFormat = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"
    instructions: str | None = Field(
        default=None, max_length=4096, description="Accepted for compatibility; unused."
    )
    stream: bool = Field(
        default=True,
        description="genstack: false waits for the whole file (exact lengths in its header, "
        "the engine's best-quality mode) instead of sending audio as it is made.",
    )
    language: str | None = Field(default=None, max_length=16)
    temperature: float | None = Field(default=None, gt=0, le=5)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=1, le=1000)
    repetition_penalty: float | None = Field(default=None, gt=0, le=100)
    length_penalty: float | None = Field(default=None, ge=-100, le=100)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)

    @property
    def voice_id(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceId) else self.voice


def match_language(languages: Sequence[str], value: str | None) -> str | None:
    """The engine's code for ``value`` (case-insensitive; a bare code matches its regional
    form, "zh" -> "zh-cn"); None when the engine does not speak it."""
    if value is None:
        return languages[0]
    wanted = value.strip().lower()
    for code in languages:
        if code.lower() == wanted:
            return code
    for code in languages:
        if code.lower().split("-")[0] == wanted:
            return code
    return None


class JobStreamingResponse(StreamingResponse):
    """A streamed response that always stops its synthesis job when it ends, however it
    ends: finished, client gone, or never started because the client left first."""

    def __init__(self, *args: Any, on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


class TTSServer:
    """One TTS server's parts: the engine, its model thread, voices and metrics."""

    def __init__(self, engine: TTSEngine, settings: TTSSettings, *, name: str) -> None:
        self.engine = engine
        self.settings = settings
        self.name = name
        self.metrics = TTSMetrics(name)
        self.runner = GpuRunner(
            max_waiting=settings.tts_max_queue,
            wait_timeout_s=settings.tts_queue_timeout_s,
            name=f"{name}-model",
            on_start=self.metrics.queue_wait.observe,
        )
        self.library = VoiceLibrary(settings.tts_voices_dir, max_voices=settings.tts_max_voices)
        self.service = SpeechService(
            engine,
            self.runner,
            self.library,
            self.metrics,
            voice_cache_size=settings.tts_voice_cache_size,
            max_reference_s=settings.tts_max_voice_seconds,
        )
        self.ready = False
        self.load_error: str | None = None

    # lifecycle -----------------------------------------------------------------------------
    async def load(self) -> None:
        started = time.monotonic()
        try:
            await self.runner.call(self.engine.load, bounded=False)
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("model failed to load", extra={"engine": self.name})
            return
        self.ready = True
        self.metrics.model_ready.set(1)
        log.info(
            "model loaded",
            extra={"engine": self.name, "seconds": round(time.monotonic() - started, 2)},
        )

    def require_ready(self) -> None:
        if self.ready:
            return
        if self.load_error is not None:
            raise ApiError(503, f"the model failed to load: {self.load_error}", code="model_error")
        raise ApiError(
            503, "the model is still loading", code="model_loading", headers={"Retry-After": "5"}
        )

    # request checks ------------------------------------------------------------------------
    def check_text(self, text: str, param: str = "input") -> str:
        if len(text) > self.settings.tts_max_input_chars:
            raise ApiError(
                413,
                f"{param} is {len(text)} characters; the limit is "
                f"{self.settings.tts_max_input_chars}",
                code="input_too_long",
                param=param,
            )
        if not text.strip():
            raise ApiError(422, f"{param} is empty", code="invalid_value", param=param)
        return text

    def resolve_voice(self, reference: str, param: str = "voice") -> VoiceRef:
        try:
            return self.service.resolve_voice(reference)
        except VoiceLibraryError as exc:
            code = "voice_not_found" if exc.status == 404 else "invalid_voice"
            raise ApiError(exc.status, str(exc), code=code, param=param) from None

    def language(self, value: str | None, param: str = "language") -> str:
        code = match_language(self.engine.languages, value)
        if code is None:
            raise ApiError(
                422,
                f"language {value!r} is not supported; one of: {', '.join(self.engine.languages)}",
                code="unsupported_language",
                param=param,
            )
        return code

    def params(self, request: SpeechRequest) -> SynthesisParams:
        try:
            extra = self.engine.extra_params.model_validate(request.model_extra or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(p) for p in first.get("loc", ()))
            raise ApiError(
                422, f"{param}: {first.get('msg')}", code="invalid_value", param=param
            ) from None
        return SynthesisParams(
            language=self.language(request.language),
            speed=request.speed,
            temperature=request.temperature,
            top_p=request.top_p,
            top_k=request.top_k,
            repetition_penalty=request.repetition_penalty,
            length_penalty=request.length_penalty,
            seed=request.seed,
            extra=extra,
        )

    # responses -----------------------------------------------------------------------------
    async def audio_response(
        self,
        *,
        text: str,
        voice: VoiceRef,
        params: SynthesisParams,
        fmt: str,
        stream: bool,
        sse: bool = False,
        started: float,
        filename: str = "speech",
    ) -> Response:
        """Synthesize and answer: a whole file (``stream`` False), audio bytes as they are
        made, or SSE events of base64 audio. Errors before the first audio are HTTP errors."""
        self.require_ready()
        try:
            job = await self.service.start(text, voice, params, stream=stream)
        except ModelBusyError as exc:
            self.metrics.rejected.inc()
            raise ApiError(
                503,
                f"{exc}; retry later",
                code="model_busy",
                headers={"Retry-After": str(exc.retry_after_s)},
            ) from None
        pipeline = AudioPipeline(
            fmt,
            self.engine.sample_rate,
            speed=params.speed,
            native_speed=self.engine.native_speed,
            streaming=stream,
        )
        items = aiter(job)
        try:
            first = await anext(items, None)
        except EngineError as exc:
            job.close()
            pipeline.close()
            raise ApiError(422, str(exc), code="engine_rejected_input") from None
        except BaseException:
            job.close()
            pipeline.close()
            raise
        audio_format = FORMATS[fmt]
        headers = {
            "Cache-Control": "no-store",
            "X-Sample-Rate": str(pipeline.encoder.output_rate),
        }
        if not stream:
            try:
                body = await self._whole(pipeline, first, items)
            finally:
                job.close()
                pipeline.close()
            self.metrics.time_to_first_audio.labels("false").observe(time.monotonic() - started)
            headers["Content-Disposition"] = (
                f'inline; filename="{filename}.{audio_format.extension}"'
            )
            return Response(body, media_type=audio_format.media_type, headers=headers)

        def close() -> None:
            job.close()
            pipeline.close()

        headers["X-Accel-Buffering"] = "no"  # proxies must not hold streamed audio back
        if sse:
            return JobStreamingResponse(
                self._sse(pipeline, first, items, started, len(text)),
                media_type="text/event-stream",
                headers=headers,
                on_close=close,
            )
        return JobStreamingResponse(
            self._stream(pipeline, first, items, started),
            media_type=audio_format.media_type,
            headers=headers,
            on_close=close,
        )

    async def _whole(
        self,
        pipeline: AudioPipeline,
        first: Any,
        items: AsyncIterator[Any],
    ) -> bytes:
        parts = [pipeline.header()]
        if first is not None:
            parts.append(await asyncio.to_thread(pipeline.feed, first))
        async for item in items:
            parts.append(await asyncio.to_thread(pipeline.feed, item))
        parts.append(await asyncio.to_thread(pipeline.finish))
        return b"".join(parts)

    async def _encoded(
        self, pipeline: AudioPipeline, first: Any, items: AsyncIterator[Any], started: float
    ) -> AsyncIterator[bytes]:
        """Container bytes as each model chunk is encoded; records time to first audio."""
        timed = False

        def mark() -> None:
            nonlocal timed
            if not timed:
                timed = True
                self.metrics.time_to_first_audio.labels("true").observe(time.monotonic() - started)

        header = pipeline.header()
        if header:
            yield header
        pending: list[Any] = [] if first is None else [first]
        while True:
            if pending:
                item = pending.pop()
            else:
                try:
                    item = await anext(items)
                except StopAsyncIteration:
                    break
            data = await asyncio.to_thread(pipeline.feed, item)
            if data:
                if not isinstance(item, SentenceEnd):
                    mark()
                yield data
        tail = await asyncio.to_thread(pipeline.finish)
        mark()
        if tail:
            yield tail

    async def _stream(
        self, pipeline: AudioPipeline, first: Any, items: AsyncIterator[Any], started: float
    ) -> AsyncIterator[bytes]:
        try:
            async for data in self._encoded(pipeline, first, items, started):
                yield data
        except Exception:
            # The status line is gone; ending without the last chunk tells the client the
            # audio is incomplete (a clean end would pass truncated audio off as whole).
            log.exception("synthesis failed mid-stream")
            raise

    async def _sse(
        self,
        pipeline: AudioPipeline,
        first: Any,
        items: AsyncIterator[Any],
        started: float,
        input_chars: int,
    ) -> AsyncIterator[bytes]:
        try:
            async for data in self._encoded(pipeline, first, items, started):
                event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}
                yield f"data: {json.dumps(event)}\n\n".encode()
        except Exception as exc:
            log.exception("synthesis failed mid-stream")
            error = {"type": "error", "error": {"message": str(exc), "type": "server_error"}}
            yield f"data: {json.dumps(error)}\n\n".encode()
            return
        done = {
            "type": "speech.audio.done",
            "usage": {"input_tokens": input_chars, "output_tokens": 0, "total_tokens": input_chars},
            "duration_s": round(pipeline.duration_s, 3),
        }
        yield f"data: {json.dumps(done)}\n\n".encode()


def _body_limit(settings: TTSSettings) -> Callable[[str], int]:
    upload = settings.max_upload_bytes + _JSON_SLACK
    text = 4 * settings.tts_max_input_chars + _JSON_SLACK  # UTF-8 is at most 4 bytes a char

    def limit_for(path: str) -> int:
        return upload if path.rstrip("/") == "/v1/audio/voices" else text

    return limit_for


def create_app(
    engine: TTSEngine,
    settings: TTSSettings,
    *,
    name: str,
    title: str,
    extra_routes: Callable[[FastAPI, TTSServer], None] | None = None,
) -> FastAPI:
    """The ASGI app of one TTS server. The model loads in the background after start-up;
    /readyz answers 503 until it has."""
    server = TTSServer(engine, settings, name=name)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        server.runner.start()
        loading = asyncio.create_task(server.load())
        try:
            yield
        finally:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await asyncio.to_thread(server.runner.stop)

    app = FastAPI(title=title, lifespan=lifespan)
    app.state.tts = server
    install_error_handlers(app)
    _routes(app, server)
    if extra_routes is not None:
        extra_routes(app, server)

    # Outermost last: CORS answers preflights and decorates every answer, 401s included.
    app.add_middleware(BodyLimitMiddleware, limit_for=_body_limit(settings))
    app.add_middleware(
        BearerAuthMiddleware, keys=[key.get_secret_value() for key in settings.tts_api_keys]
    )
    app.add_middleware(MetricsMiddleware, metrics=server.metrics)
    if settings.tts_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.tts_cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Cache-Control"],
            expose_headers=["X-Sample-Rate", "Retry-After"],
        )
    return app


def _routes(app: FastAPI, server: TTSServer) -> None:
    engine = server.engine

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        checks = {
            "model": "ok"
            if server.ready
            else (f"failed: {server.load_error}" if server.load_error else "loading"),
            "model_thread": "ok" if server.runner.alive else "stopped",
        }
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        server.metrics.queue_depth.set(server.runner.waiting)
        return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", tags=["openai"])
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": model_id, "object": "model", "created": 0, "owned_by": "genstack"}
                for model_id in engine.model_ids
            ],
        }

    @app.post("/v1/audio/speech", tags=["openai"], response_class=Response)
    async def speech(request: SpeechRequest) -> Response:
        started = time.monotonic()
        if request.model is not None and request.model not in (
            *engine.model_ids,
            *OPENAI_MODEL_ALIASES,
        ):
            raise ApiError(
                404,
                f"model {request.model!r} is not served here; this server has "
                f"{', '.join(engine.model_ids)}",
                code="model_not_found",
                param="model",
            )
        server.require_ready()  # built-in voices are known once the model is loaded
        text = server.check_text(request.input)
        voice = server.resolve_voice(request.voice_id)
        params = server.params(request)
        return await server.audio_response(
            text=text,
            voice=voice,
            params=params,
            fmt=request.response_format,
            stream=request.stream or request.stream_format == "sse",
            sse=request.stream_format == "sse",
            started=started,
        )

    @app.get("/v1/audio/voices", tags=["voices"])
    async def list_voices() -> dict[str, Any]:
        voices = await asyncio.to_thread(server.service.voices)
        return {"object": "list", "data": voices}

    @app.get("/v1/audio/voices/{voice_id}", tags=["voices"])
    async def get_voice(voice_id: str) -> dict[str, object]:
        voice = server.resolve_voice(voice_id, param="voice_id")
        if voice.kind == "builtin":
            return {"id": voice.id, "object": "audio.voice", "name": voice.name, "type": "builtin"}
        return server.library.get(voice.id).to_api()

    @app.get("/v1/audio/voices/{voice_id}/sample", tags=["voices"], response_class=Response)
    async def voice_sample(voice_id: str) -> Response:
        voice = server.resolve_voice(voice_id, param="voice_id")
        if voice.kind != "library":
            raise ApiError(404, f"built-in voice {voice_id!r} has no reference audio")
        data = await asyncio.to_thread(server.library.get(voice.id).path.read_bytes)
        return Response(data, media_type="audio/wav")

    @app.post("/v1/audio/voices", tags=["voices"], status_code=201)
    async def create_voice(
        name: Annotated[str | None, Form(max_length=256)] = None,
        audio_sample: Annotated[UploadFile | None, File()] = None,
        file: Annotated[UploadFile | None, File()] = None,
        consent: Annotated[str | None, Form(max_length=256)] = None,
        type: Annotated[str | None, Form(max_length=32)] = None,
    ) -> dict[str, object]:
        """Add a voice from reference audio (OpenAI's multipart form; ``consent`` is
        accepted and not checked)."""
        if type not in (None, "audio_sample"):
            raise ApiError(422, "only voices from an audio sample can be made here", param="type")
        upload = audio_sample or file
        if upload is None:
            raise ApiError(
                422, "send the reference audio as 'audio_sample' (or 'file')", param="audio_sample"
            )
        settings = server.settings
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise ApiError(
                413,
                f"audio_sample is larger than {settings.tts_max_voice_upload_mb:g} MB",
                code="upload_too_large",
                param="audio_sample",
            )
        try:
            samples = await asyncio.to_thread(
                decode_audio, data, rate=STORE_RATE, max_seconds=settings.tts_max_voice_seconds
            )
        except AudioTooLongError as exc:
            raise ApiError(422, str(exc), code="audio_too_long", param="audio_sample") from None
        except AudioDecodeError as exc:
            raise ApiError(422, str(exc), code="invalid_audio", param="audio_sample") from None
        seconds = samples.size / STORE_RATE
        if seconds < settings.tts_min_voice_seconds:
            raise ApiError(
                422,
                f"the audio is {seconds:.2f} s; at least {settings.tts_min_voice_seconds:g} s "
                "of speech is needed",
                code="audio_too_short",
                param="audio_sample",
            )
        if float(abs(samples).max(initial=0.0)) < 1e-3:
            raise ApiError(422, "the audio is silent", code="invalid_audio", param="audio_sample")
        label = (name or upload.filename or "voice").strip()[:256] or "voice"
        try:
            stored = await asyncio.to_thread(server.library.add, label, samples)
        except VoiceLibraryError as exc:
            raise ApiError(exc.status, str(exc), code="voice_library_full") from None
        log.info("voice added", extra={"voice_id": stored.id, "seconds": round(seconds, 2)})
        return stored.to_api()

    @app.delete("/v1/audio/voices/{voice_id}", tags=["voices"])
    async def delete_voice(voice_id: str) -> dict[str, object]:
        voice = server.resolve_voice(voice_id, param="voice_id")
        if voice.kind != "library":
            raise ApiError(400, f"built-in voice {voice_id!r} cannot be deleted", param="voice_id")
        await asyncio.to_thread(server.library.delete, voice.id)
        server.service.forget(voice.id)
        return {"id": voice.id, "object": "audio.voice.deleted", "deleted": True}
