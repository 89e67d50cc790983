"""XTTS v2: queue tts.xtts, model server on :8020 (services/xtts)."""

from __future__ import annotations

from pydantic import Field, field_validator

from genstack.core.contracts.common import ParamsMap
from genstack.core.contracts.speech import SpeechParams
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


class XttsSpeechParams(SpeechParams):
    language: str | None = Field(
        default=None,
        max_length=16,
        description=f"One of {', '.join(LANGUAGES)} (any case; zh means zh-cn); default en.",
    )
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=1, le=1000)
    repetition_penalty: float | None = Field(default=None, gt=0, le=100)
    length_penalty: float | None = Field(default=None, ge=-100, le=100)
    stream_chunk_size: int | None = Field(
        default=None, ge=5, le=400, description="GPT tokens per streamed chunk."
    )

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        # As the server matches it: exact code, else a bare code to its regional form.
        if value is None:
            return None
        wanted = value.strip().lower()
        for code in LANGUAGES:
            if wanted in (code, code.split("-")[0]):
                return code
        raise ValueError(f"XTTS speaks {', '.join(LANGUAGES)}, not {value!r}")


PARAMS: ParamsMap = {JobType.TTS: XttsSpeechParams}
