"""XTTS v2: queue tts.xtts, model server on :8020 (services/xtts)."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from pydantic import AfterValidator, Field

from genstack.core.contracts.common import ParamsMap
from genstack.core.contracts.speech import (
    LanguageCode,
    LengthPenalty,
    RepetitionPenalty,
    SpeechParams,
    TopK,
    TopP,
    check_language,
)
from genstack.core.jobs import JobType

QUEUE = "tts.xtts"
MODELS = ("xtts", "xtts-v2")

# XTTS v2's 17 languages, in its config's order; names as xtts-api-server lists them.
LANGUAGE_NAMES = {
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "it": "Italian",
    "pt": "Brazilian Portuguese",
    "pl": "Polish",
    "tr": "Turkish",
    "ru": "Russian",
    "nl": "Dutch",
    "cs": "Czech",
    "ar": "Arabic",
    "zh-cn": "Chinese",
    "hu": "Hungarian",
    "ko": "Korean",
    "ja": "Japanese",
    "hi": "Hindi",
}
LANGUAGES = tuple(LANGUAGE_NAMES)


# As the server matches it (the same function), so the server takes what passes here.
Language = Annotated[LanguageCode, AfterValidator(partial(check_language, LANGUAGES, "XTTS"))]


class XttsSpeechParams(SpeechParams):
    language: Language | None = Field(
        default=None,
        description=f"One of {', '.join(LANGUAGES)} (any case; zh means zh-cn); default: a "
        "library voice's own language, else en.",
    )
    top_p: TopP | None = None
    top_k: TopK | None = None
    repetition_penalty: RepetitionPenalty | None = None
    length_penalty: LengthPenalty | None = None
    stream_chunk_size: int | None = Field(
        default=None, ge=5, le=400, description="GPT tokens per streamed chunk."
    )


PARAMS: ParamsMap = {JobType.TTS: XttsSpeechParams}
