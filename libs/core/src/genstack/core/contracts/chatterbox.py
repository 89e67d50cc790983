"""Chatterbox: queue tts.chatterbox, model server on :8004."""

from __future__ import annotations

from pydantic import Field

from genstack.core.contracts.common import ParamsMap
from genstack.core.contracts.speech import SpeechParams
from genstack.core.jobs import JobType

QUEUE = "tts.chatterbox"
MODELS = ("chatterbox",)


class ChatterboxSpeechParams(SpeechParams):
    exaggeration: float | None = Field(
        default=None, ge=0.25, le=2.0, description="Emotion intensity."
    )
    cfg_weight: float | None = Field(default=None, ge=0.0, le=1.0, description="Pace / guidance.")


PARAMS: ParamsMap = {JobType.TTS: ChatterboxSpeechParams}
