"""Chatterbox: queue tts.chatterbox, model server on :8004 (services/chatterbox)."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from pydantic import AfterValidator, Field

from genstack.core.contracts.common import ParamsMap
from genstack.core.contracts.speech import (
    LanguageCode,
    RepetitionPenalty,
    SpeechParams,
    TopK,
    TopP,
    check_language,
)
from genstack.core.jobs import JobType

QUEUE = "tts.chatterbox"
MODELS = ("chatterbox",)
# CHATTERBOX_MODEL: which of chatterbox-tts's three models a server runs.
VARIANTS = ("english", "multilingual", "turbo")

# The multilingual model's 23 languages (chatterbox-tts's SUPPORTED_LANGUAGES); the English
# and Turbo models speak English only.
LANGUAGE_NAMES = {
    "ar": "Arabic",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "fi": "Finnish",
    "fr": "French",
    "he": "Hebrew",
    "hi": "Hindi",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "ms": "Malay",
    "nl": "Dutch",
    "no": "Norwegian",
    "pl": "Polish",
    "pt": "Portuguese",
    "ru": "Russian",
    "sv": "Swedish",
    "sw": "Swahili",
    "tr": "Turkish",
    "zh": "Chinese",
}
LANGUAGES = tuple(LANGUAGE_NAMES)


# As the server matches it (the same function), so the server takes what passes here.
Language = Annotated[LanguageCode, AfterValidator(partial(check_language, LANGUAGES, "Chatterbox"))]


class ChatterboxSpeechParams(SpeechParams):
    exaggeration: float | None = Field(
        default=None, ge=0.25, le=2.0, description="Emotion intensity (0.5: neutral)."
    )
    cfg_weight: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Classifier-free guidance: pace and adherence (0: none; 0.5 default).",
    )
    language: Language | None = Field(
        default=None,
        description="The multilingual model's language (one of its 23); default: a library "
        "voice's own language, else en.",
    )
    min_p: float | None = Field(default=None, ge=0.0, le=1.0, description="Min-p sampling.")
    top_p: TopP | None = None
    top_k: TopK | None = None
    repetition_penalty: RepetitionPenalty | None = None


PARAMS: ParamsMap = {JobType.TTS: ChatterboxSpeechParams}
