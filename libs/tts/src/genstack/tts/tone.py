"""A deterministic tone synthesiser that needs no weights: a real engine behind the real
server, for this library's tests and benchmarks and for trying a deployment without a GPU.

Each letter becomes a short harmonic tone around the voice's pitch, spaces and punctuation
become pauses. A voice made from reference audio takes that audio's pitch (autocorrelation)
and brightness. Each language raises the pitch a tenth per place in ``languages``, so tests
hear which language a request was spoken in. Like a neural engine it keeps its random state
in the engine (seeded per call when a seed is given), and it can be told to take time per
character, so the server's serialisation, streaming and cancellation are exercised as with a
GPU model.

    genstack-tts-tone serve --port 8021 [--char-delay-ms 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from genstack.tts.engine import EngineError, Samples, SynthesisParams

RATE = 24_000
LETTER_S = 0.06
SPACE_S = 0.04
PAUSE_S = 0.15
_BUILTIN = {"alto": (220.0, 0.5), "bass": (110.0, 0.3), "soprano": (440.0, 0.7)}


class ToneParams(BaseModel):
    """The tone engine's own request fields."""

    model_config = ConfigDict(extra="ignore")
    vibrato: float = Field(default=0.0, ge=0.0, le=1.0, description="Pitch wobble depth.")


@dataclass(frozen=True)
class ToneVoice:
    pitch_hz: float
    brightness: float  # 0..1: weight of the upper harmonics


def estimate_pitch(audio: Samples, rate: int) -> float:
    """Fundamental frequency of the loudest second of ``audio`` by autocorrelation."""
    window = rate
    if audio.size > window:
        energy = np.convolve(audio.astype(np.float64) ** 2, np.ones(rate // 10), mode="valid")
        start = int(np.argmax(energy[: audio.size - window + 1]))
        audio = audio[start : start + window]
    x = audio.astype(np.float64) - float(np.mean(audio))
    if not np.any(x):
        return 0.0
    corr = np.correlate(x, x, mode="full")[x.size - 1 :]
    lo, hi = rate // 500, rate // 60  # 60..500 Hz
    if hi >= corr.size:
        return 0.0
    lag = lo + int(np.argmax(corr[lo:hi]))
    return float(rate / lag)


class ToneEngine:
    model_ids: Sequence[str] = ("tone",)
    sample_rate = RATE
    reference_sample_rate = 16_000
    languages: Sequence[str] = ("en", "de", "fr", "es", "it")
    native_speed = False
    extra_params = ToneParams

    def __init__(self, *, char_delay_s: float = 0.0, load_delay_s: float = 0.0) -> None:
        self.char_delay_s = char_delay_s
        self.load_delay_s = load_delay_s
        self.loaded = False
        # Engine-level random state, as torch's global generator is for a neural model.
        self._rng = np.random.default_rng()

    def load(self) -> None:
        time.sleep(self.load_delay_s)
        self.loaded = True

    def builtin_voices(self) -> Sequence[str]:
        # Known once loaded, as a neural model's voices come with its checkpoint.
        return tuple(_BUILTIN) if self.loaded else ()

    def builtin_voice(self, name: str) -> ToneVoice:
        pitch, brightness = _BUILTIN[name]
        return ToneVoice(pitch, brightness)

    def make_voice(self, audio: Samples) -> ToneVoice:
        pitch = estimate_pitch(audio, self.reference_sample_rate)
        if pitch <= 0:
            raise EngineError("no pitch found in the reference audio")
        crossings = np.count_nonzero(np.diff(np.signbit(audio)))
        zcr = crossings / max(audio.size, 1) * self.reference_sample_rate
        brightness = float(np.clip(zcr / (8 * pitch), 0.1, 0.9))
        return ToneVoice(pitch, brightness)

    def max_chunk_chars(self, language: str) -> int:
        return 120

    def synthesize(
        self, text: str, voice: ToneVoice, params: SynthesisParams, *, stream: bool
    ) -> Iterator[Samples]:
        if not self.loaded:
            raise RuntimeError("the engine is not loaded")
        if params.seed is not None:
            self._rng = np.random.default_rng(params.seed)
        temperature = 0.5 if params.temperature is None else params.temperature
        vibrato = params.extra.vibrato if isinstance(params.extra, ToneParams) else 0.0
        place = self.languages.index(params.language) if params.language in self.languages else 0
        accent = 1.0 + 0.1 * place
        voice = ToneVoice(voice.pitch_hz * accent, voice.brightness)
        pieces: list[Samples] = []
        piece_chars = 0
        for char in text:
            pieces.append(self._sound(char, voice, temperature, vibrato))
            piece_chars += 1
            if stream and piece_chars >= 8:  # about half a second of audio per chunk
                yield self._emit(pieces, piece_chars)
                pieces, piece_chars = [], 0
        if pieces:
            yield self._emit(pieces, piece_chars)

    def _emit(self, pieces: list[Samples], chars: int) -> Samples:
        if self.char_delay_s:
            time.sleep(self.char_delay_s * chars)  # the "GPU" time these characters take
        return np.concatenate(pieces).astype(np.float32)

    def _sound(self, char: str, voice: ToneVoice, temperature: float, vibrato: float) -> Samples:
        if char.isspace():
            return np.zeros(int(SPACE_S * RATE), dtype=np.float32)
        if not char.isalnum():
            return np.zeros(int(PAUSE_S * RATE), dtype=np.float32)
        n = int(LETTER_S * RATE)
        t = np.arange(n) / RATE
        step = (ord(char.lower()) % 12) / 12.0
        jitter = float(self._rng.normal(0.0, 0.02 * temperature))
        f0 = voice.pitch_hz * (1.0 + 0.5 * step + jitter)
        phase = 2 * np.pi * f0 * t + vibrato * np.sin(2 * np.pi * 6 * t)
        wave = np.sin(phase) + voice.brightness * 0.5 * np.sin(2 * phase)
        wave += voice.brightness * 0.25 * np.sin(3 * phase)
        envelope = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.008)
        return (0.25 * wave * envelope).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="genstack-tts-tone", description="The genstack TTS server with the tone engine."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve_parser = sub.add_parser("serve", help="serve the OpenAI speech API with the tone engine")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8021)
    serve_parser.add_argument(
        "--char-delay-ms", type=float, default=0.0, help="compute time per char"
    )
    serve_parser.add_argument("--load-delay-s", type=float, default=0.0, help="model load time")
    args = parser.parse_args(argv)

    from genstack.core.logging import configure_logging
    from genstack.http.serve import ServeOptions, serve
    from genstack.tts.app import create_app
    from genstack.tts.settings import TTSSettings

    settings = TTSSettings()
    configure_logging("tts-tone", settings.log_level, settings.log_format)
    engine = ToneEngine(char_delay_s=args.char_delay_ms / 1000, load_delay_s=args.load_delay_s)
    app = create_app(engine, settings, name="tone", title="genstack tone TTS")
    return serve(app, ServeOptions(host=args.host, port=args.port))


if __name__ == "__main__":
    sys.exit(main())
