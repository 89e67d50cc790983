"""XTTS v2 (queue tts.xtts, model server on :8020)."""

from __future__ import annotations

from typing import Literal

from genstack.core.jobs import JobType
from genstack.gateway.backends.common import SpeechParams

XttsLanguage = Literal[
    "en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl",
    "cs", "ar", "zh-cn", "ja", "hu", "ko", "hi",
]  # fmt: skip


class XttsSpeechParams(SpeechParams):
    language: XttsLanguage = "en"


PARAMS = {JobType.TTS: XttsSpeechParams}
