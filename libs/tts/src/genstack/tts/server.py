"""One TTS server's parts (the engine, its model thread, the voice library, metrics) and what
every route needs of them: readiness, request checks and building the audio answer.

Routes reach the server of their app through the :func:`get_server` dependency.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.responses import Response

from genstack.core.contracts.speech import match_language
from genstack.http.errors import ApiError, validation_message
from genstack.tts.audio import FORMATS, AudioDecodeError, AudioTooLongError, decode_audio
from genstack.tts.engine import EngineError, Samples, SynthesisParams, TTSEngine
from genstack.tts.metrics import TTSMetrics
from genstack.tts.model_thread import ModelBusyError, ModelThread
from genstack.tts.responses import (
    SynthesisStreamingResponse,
    audio_stream,
    sse_stream,
    whole_file,
)
from genstack.tts.settings import TTSSettings
from genstack.tts.synthesis import AudioPipeline, ResolvedVoice, SpeechService
from genstack.tts.voices import STORE_RATE, VoiceLibrary, VoiceLibraryError, VoiceNotFoundError

log = logging.getLogger(__name__)


class TTSServer:
    """One TTS server's parts: the engine, its model thread, voices and metrics."""

    def __init__(
        self,
        engine: TTSEngine,
        settings: TTSSettings,
        *,
        name: str,
        default_format: str = "mp3",
        voice_aliases: Mapping[str, str] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.name = name
        # What /v1/audio/speech answers in when the request names no format (OpenAI: mp3; a
        # server standing in for another may keep that one's default).
        self.default_format = default_format
        # Voice names (any case) that stand for another voice where no voice has that name,
        # e.g. OpenAI's "alloy" for the model's default voice.
        self.voice_aliases = {k.lower(): v for k, v in (voice_aliases or {}).items()}
        self.metrics = TTSMetrics(name)
        self.model_thread = ModelThread(
            max_waiting=settings.tts_max_queue,
            wait_timeout_s=settings.tts_queue_timeout_s,
            name=f"{name}-model",
            on_start=self.metrics.queue_wait.observe,
        )
        self.library = VoiceLibrary(settings.tts_voices_dir, max_voices=settings.tts_max_voices)
        self.service = SpeechService(
            engine,
            self.model_thread,
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
            await self.model_thread.call(self.engine.load, bounded=False)
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

    def checks(self) -> dict[str, str]:
        """/readyz's checks: the model is loaded and its thread runs."""
        if self.ready:
            model = "ok"
        else:
            model = f"failed: {self.load_error}" if self.load_error else "loading"
        return {"model": model, "model_thread": "ok" if self.model_thread.alive else "stopped"}

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
            raise ApiError(400, f"{param} is empty", code="invalid_value", param=param)
        return text

    def resolve_voice(self, reference: str, param: str = "voice") -> ResolvedVoice:
        try:
            try:
                return self.service.resolve_voice(reference)
            except VoiceNotFoundError:
                alias = self.voice_aliases.get(reference.strip().lower())
                if alias is None:
                    raise
                return self.service.resolve_voice(alias)
        except VoiceLibraryError as exc:
            code = "voice_not_found" if exc.status == 404 else "invalid_voice"
            raise ApiError(exc.status, str(exc), code=code, param=param) from None

    def language(
        self, value: str | None, voice: ResolvedVoice | None = None, param: str = "language"
    ) -> str:
        """The engine's code for the request's ``language``; when it names none, the
        library voice's own language where the engine speaks it, else the default."""
        if value is None and voice is not None and voice.language is not None:
            spoken = match_language(self.engine.languages, voice.language)
            if spoken is not None:
                return spoken
        code = match_language(self.engine.languages, value)
        if code is None:
            raise ApiError(
                400,
                f"language {value!r} is not supported; one of: {', '.join(self.engine.languages)}",
                code="unsupported_language",
                param=param,
            )
        return code

    async def reference_audio(
        self, upload: UploadFile, *, param: str, rate: int = STORE_RATE
    ) -> Samples:
        """An uploaded voice reference decoded at ``rate`` (the library's by default); 413
        when too large, 400 naming ``param`` when it is not usable speech. Its file name is
        never used."""
        settings = self.settings
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise ApiError(
                413,
                f"{param} is larger than {settings.tts_max_voice_upload_mb:g} MB",
                code="upload_too_large",
                param=param,
            )
        try:
            samples = await asyncio.to_thread(
                decode_audio, data, rate=rate, max_seconds=settings.tts_max_voice_seconds
            )
        except AudioTooLongError as exc:
            raise ApiError(400, str(exc), code="audio_too_long", param=param) from None
        except AudioDecodeError as exc:
            raise ApiError(400, str(exc), code="invalid_audio", param=param) from None
        seconds = samples.size / rate
        if seconds < settings.tts_min_voice_seconds:
            raise ApiError(
                400,
                f"{param} is {seconds:.2f} s; at least {settings.tts_min_voice_seconds:g} s "
                "of speech is needed",
                code="audio_too_short",
                param=param,
            )
        if float(abs(samples).max(initial=0.0)) < 1e-3:
            raise ApiError(400, f"{param} is silent", code="invalid_audio", param=param)
        return samples

    def engine_params(self, fields: Mapping[str, Any]) -> BaseModel:
        """The engine's own request fields (``extra_params``), validated; 400 naming the
        first bad one."""
        try:
            return self.engine.extra_params.model_validate(fields)
        except ValidationError as exc:
            message, param = validation_message(exc.errors())
            raise ApiError(400, message, code="invalid_value", param=param) from None

    # responses -----------------------------------------------------------------------------
    async def audio_response(
        self,
        *,
        text: str,
        voice: ResolvedVoice,
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
            synthesis = await self.service.start(text, voice, params, stream=stream)
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

        def close() -> None:
            synthesis.close()
            pipeline.close()

        items = aiter(synthesis)
        try:
            first = await anext(items, None)
        except EngineError as exc:
            close()
            raise ApiError(400, str(exc), code="engine_rejected_input") from None
        except BaseException:
            close()
            raise
        audio_format = FORMATS[fmt]
        headers = {
            "Cache-Control": "no-store",
            "X-Sample-Rate": str(pipeline.encoder.output_rate),
        }
        if not stream:
            try:
                body = await whole_file(pipeline, first, items)
            finally:
                close()
            self.metrics.time_to_first_audio.labels("false").observe(time.monotonic() - started)
            headers["Content-Disposition"] = (
                f'inline; filename="{filename}.{audio_format.extension}"'
            )
            return Response(body, media_type=audio_format.media_type, headers=headers)

        def first_audio() -> None:
            self.metrics.time_to_first_audio.labels("true").observe(time.monotonic() - started)

        headers["X-Accel-Buffering"] = "no"  # proxies must not hold streamed audio back
        if sse:
            return SynthesisStreamingResponse(
                sse_stream(pipeline, first, items, first_audio, len(text)),
                media_type="text/event-stream",
                headers=headers,
                on_close=close,
            )
        return SynthesisStreamingResponse(
            audio_stream(pipeline, first, items, first_audio),
            media_type=audio_format.media_type,
            headers=headers,
            on_close=close,
        )


def get_server(request: Request) -> TTSServer:
    """The dependency routes take their server from (``app.state.tts``, set by create_app)."""
    server: TTSServer = request.app.state.tts
    return server


Server = Annotated[TTSServer, Depends(get_server)]
