"""Chatterbox (queue tts.chatterbox, model server on :8004)."""

from __future__ import annotations

from pydantic import Field

from genstack.core.jobs import JobType
from genstack.gateway.backends.common import SpeechParams


class ChatterboxSpeechParams(SpeechParams):
    exaggeration: float = Field(default=0.5, ge=0.25, le=2.0, description="Emotion intensity.")
    cfg_weight: float = Field(default=0.5, ge=0.0, le=1.0, description="Pace / guidance.")
    temperature: float = Field(default=0.8, ge=0.05, le=5.0)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)


PARAMS = {JobType.TTS: ChatterboxSpeechParams}
