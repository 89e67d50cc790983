"""The engine protocol: what a speech model must offer to be served by genstack.tts.

An engine is used from one thread at a time (the server's GPU thread), so it may keep model
state without locks; it must not keep per-request state between calls (the voice and every
generation setting arrive with each call).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

Samples = npt.NDArray[np.float32]
"""Mono float32 PCM in [-1, 1] at the engine's sample rate."""


class NoExtraParams(BaseModel):
    """Engines without parameters of their own; unknown request fields are ignored."""

    model_config = ConfigDict(extra="ignore")


@dataclass(frozen=True)
class SynthesisParams:
    """Generation settings of one request. None: the engine's default."""

    language: str
    speed: float = 1.0
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    length_penalty: float | None = None
    seed: int | None = None
    extra: BaseModel = field(default_factory=NoExtraParams)

    @classmethod
    def from_request(
        cls, request: object, *, language: str, extra: BaseModel | None = None
    ) -> SynthesisParams:
        """The settings ``request`` carries (an OpenAI speech request, a client's saved
        xtts-api-server settings): each field of this class it has by name and not None;
        ``language`` as the server resolved it."""
        values = {
            f.name: value
            for f in fields(cls)
            if f.name not in ("language", "extra")
            and (value := getattr(request, f.name, None)) is not None
        }
        return cls(language=language, extra=extra or NoExtraParams(), **values)


class EngineError(Exception):
    """The engine cannot do what was asked for a reason the client caused (HTTP 400)."""


@runtime_checkable
class TTSEngine(Protocol):
    """A text-to-speech model behind the shared server."""

    #: Model ids a client may name (OpenAI's ``model``); the first is the canonical one.
    model_ids: Sequence[str]
    #: Rate of the samples ``synthesize`` yields.
    sample_rate: int
    #: Rate ``make_voice`` wants its reference audio in.
    reference_sample_rate: int
    #: Language codes ``SynthesisParams.language`` may take; the first is the default.
    languages: Sequence[str]
    #: Whether ``synthesize`` honours ``SynthesisParams.speed`` itself; if not, the server
    #: time-stretches the audio (pitch kept).
    native_speed: bool

    @property
    def extra_params(self) -> type[BaseModel]:
        """The engine's own request fields, validated from what a request carries beyond
        the shared ones (OpenAI's fields and SynthesisParams)."""

    def load(self) -> None:
        """Load the model (called once, on the GPU thread, before anything else)."""

    def builtin_voices(self) -> Sequence[str]:
        """Names of the voices that come with the model."""

    def builtin_voice(self, name: str) -> Any:
        """The conditioning of a built-in voice (whatever ``synthesize`` takes)."""

    def make_voice(self, audio: Samples) -> Any:
        """Conditioning from mono reference audio at ``reference_sample_rate``."""

    def max_chunk_chars(self, language: str) -> int:
        """Longest text ``synthesize`` takes at once for ``language``."""

    def synthesize(
        self, text: str, voice: Any, params: SynthesisParams, *, stream: bool
    ) -> Iterator[Samples]:
        """Speak one sentence-sized ``text``; yields audio as it is made. ``stream``: the
        caller plays it while it is made, so yield early and often; otherwise yield
        whatever is best for quality. A seed in ``params`` makes the result repeatable."""
