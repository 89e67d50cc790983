"""From a request to audio: voice resolution, conditioning cache, sentence-by-sentence
synthesis on the model thread, and the encoding pipeline (joins, tempo, container)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from genstack.tts.audio import Encoder, SentenceJoiner, TempoStretcher, decode_audio
from genstack.tts.cache import LRUCache
from genstack.tts.engine import Samples, SynthesisParams, TTSEngine
from genstack.tts.metrics import TTSMetrics
from genstack.tts.model_thread import ModelStream, ModelThread
from genstack.tts.text import split_sentences
from genstack.tts.voices import (
    InvalidVoiceIdError,
    VoiceLibrary,
    VoiceNotFoundError,
    is_valid_voice_id,
)

log = logging.getLogger(__name__)

_PATH_MARKS = ("/", "\\", "\x00", "..", ":")


class SentenceEnd:
    """Marker between sentences in the model thread's output."""


SENTENCE_END = SentenceEnd()


@dataclass(frozen=True)
class ResolvedVoice:
    """The voice a request named, resolved to a built-in voice or a library entry."""

    kind: Literal["builtin", "library", "upload"]
    id: str
    name: str
    version: tuple[int, int] = (0, 0)
    # What a library voice speaks, where its uploader said: the language a request that
    # names none is spoken in.
    language: str | None = field(default=None, compare=False)
    # "upload": reference audio sent with the request (at the engine's reference rate),
    # not stored; its id is a digest of the audio, so a repeated upload hits the cache.
    audio: Samples | None = field(default=None, compare=False, repr=False)

    @property
    def cache_key(self) -> tuple[str, str, tuple[int, int]]:
        return (self.kind, self.id, self.version)


class SpeechService:
    """Everything between the HTTP layer and the engine."""

    def __init__(
        self,
        engine: TTSEngine,
        model_thread: ModelThread,
        library: VoiceLibrary,
        metrics: TTSMetrics,
        *,
        voice_cache_size: int,
        max_reference_s: float,
    ) -> None:
        self.engine = engine
        self.model_thread = model_thread
        self.library = library
        self.metrics = metrics
        self.max_reference_s = max_reference_s
        self.conditionings: LRUCache[tuple[str, str, tuple[int, int]], Any] = LRUCache(
            voice_cache_size
        )

    # voices --------------------------------------------------------------------------------
    def resolve_voice(self, reference: str) -> ResolvedVoice:
        """A library voice by id (``name.wav`` accepted, as xtts-api-server clients send
        it), else a built-in voice by name. Anything path-like is refused, never opened."""
        ref = reference.strip()
        if not ref or any(mark in ref for mark in _PATH_MARKS):
            raise InvalidVoiceIdError(
                f"voice {reference!r} is not a voice id: paths and file names are not accepted"
            )
        stem = ref[:-4] if ref.lower().endswith(".wav") else ref
        if is_valid_voice_id(stem):
            stored = self.library.find(stem)
            if stored is not None:
                return ResolvedVoice(
                    "library", stored.id, stored.name, stored.version, language=stored.language
                )
        builtin = self.engine.builtin_voices()
        for name in (ref, stem):
            if name in builtin:
                return ResolvedVoice("builtin", name, name)
        raise VoiceNotFoundError(f"voice {reference!r} not found")

    def voices(self) -> list[dict[str, object]]:
        """Every voice, built-in first, as the voices API lists them."""
        listed: list[dict[str, object]] = [
            {"id": name, "object": "audio.voice", "name": name, "type": "builtin"}
            for name in self.engine.builtin_voices()
        ]
        listed.extend(voice.to_api() for voice in self.library.list())
        return listed

    def forget(self, voice_id: str) -> None:
        self.conditionings.discard(lambda key: key[0] == "library" and key[1] == voice_id)

    def _conditioning(self, voice: ResolvedVoice) -> Any:
        """On the model thread: the cached conditioning or a new one."""
        cached = self.conditionings.get(voice.cache_key)
        if cached is not None:
            self.metrics.voice_cache.labels("hit").inc()
            return cached
        self.metrics.voice_cache.labels("miss").inc()
        if voice.kind == "builtin":
            made = self.engine.builtin_voice(voice.id)
        elif voice.kind == "upload" and voice.audio is not None:
            made = self.engine.make_voice(voice.audio)
        else:
            stored = self.library.get(voice.id)
            with stored.path.open("rb") as f:
                audio = decode_audio(
                    f,
                    rate=self.engine.reference_sample_rate,
                    max_seconds=self.max_reference_s,
                    truncate=True,  # a long file dropped in by hand: its start is enough
                )
            made = self.engine.make_voice(audio)
        self.conditionings.put(voice.cache_key, made)
        return made

    # synthesis -----------------------------------------------------------------------------
    async def start(
        self, text: str, voice: ResolvedVoice, params: SynthesisParams, *, stream: bool
    ) -> ModelStream[Samples | SentenceEnd]:
        """Wait for the model (ModelBusyError past the limits) and start speaking ``text``;
        iterate the returned job for audio chunks and SENTENCE_END markers."""
        sentences = split_sentences(text, self.engine.max_chunk_chars(params.language))
        engine, metrics = self.engine, self.metrics

        def produce(cancel: threading.Event) -> Iterator[Samples | SentenceEnd]:
            started = time.monotonic()
            samples = 0
            try:
                conditioning = self._conditioning(voice)
                for sentence in sentences:
                    if cancel.is_set():
                        break
                    for chunk in engine.synthesize(sentence, conditioning, params, stream=stream):
                        samples += chunk.size
                        yield np.asarray(chunk, dtype=np.float32).reshape(-1)
                        if cancel.is_set():
                            break
                    yield SENTENCE_END
            finally:
                elapsed = time.monotonic() - started
                seconds = samples / engine.sample_rate
                if cancel.is_set():
                    metrics.cancelled.inc()
                if seconds > 0:
                    metrics.audio_seconds.inc(seconds)
                    metrics.realtime_factor.observe(elapsed / seconds)

        self.metrics.queue_depth.set(self.model_thread.waiting + 1)
        try:
            return await self.model_thread.open(produce)
        finally:
            self.metrics.queue_depth.set(self.model_thread.waiting)


class AudioPipeline:
    """Model output -> joined sentences -> tempo -> container bytes. Synchronous and cheap
    per chunk; the HTTP layer runs it off the event loop."""

    def __init__(
        self, fmt: str, sample_rate: int, *, speed: float, native_speed: bool, streaming: bool
    ) -> None:
        self.joiner = SentenceJoiner(sample_rate)
        self.stretcher = (
            TempoStretcher(sample_rate, speed) if speed != 1.0 and not native_speed else None
        )
        self.encoder = Encoder(fmt, sample_rate, streaming=streaming)
        self.samples_out = 0
        self.sample_rate = sample_rate
        # feed() runs in a worker thread; a client that leaves mid-feed must not have the
        # encoder closed under it (FFmpeg state is not thread-safe).
        self._lock = threading.Lock()

    def header(self) -> bytes:
        return self.encoder.header()

    def feed(self, item: Samples | SentenceEnd) -> bytes:
        with self._lock:
            if isinstance(item, SentenceEnd):
                audio = self.joiner.end_sentence()
            else:
                audio = self.joiner.push(item)
            if self.stretcher is not None:
                audio = self.stretcher.process(audio)
            self.samples_out += audio.size
            return self.encoder.encode(audio)

    def finish(self) -> bytes:
        with self._lock:
            audio = self.joiner.end_sentence()
            if self.stretcher is not None:
                audio = np.concatenate([self.stretcher.process(audio), self.stretcher.flush()])
            self.samples_out += audio.size
            return self.encoder.encode(audio) + self.encoder.finish()

    def close(self) -> None:
        with self._lock:
            self.encoder.close()

    @property
    def duration_s(self) -> float:
        return self.samples_out / self.sample_rate
