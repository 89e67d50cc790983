"""What clients send to a TTS server: OpenAI's speech request (plus engine fields), voice ids,
and how a requested language is matched to the engine's codes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from genstack.tts.audio import ResponseFormat

# Model names OpenAI clients send by habit; each TTS server answers them with its own model.
OPENAI_MODEL_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")


class VoiceId(BaseModel):
    id: str = Field(min_length=1, max_length=256)


class SpeechRequest(BaseModel):
    """OpenAI's request plus engine fields; fields of the engine's own are validated by the
    engine, others are ignored (as OpenAI clients add fields of newer API versions)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(default=None, max_length=200)
    input: str = Field(min_length=1)
    voice: str | VoiceId
    response_format: ResponseFormat = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"
    instructions: str | None = Field(
        default=None, max_length=4096, description="Accepted for compatibility; unused."
    )
    stream: bool = Field(
        default=True,
        description="genstack: false waits for the whole file (exact lengths in its header, "
        "the engine's best-quality mode) instead of sending audio as it is made.",
    )
    language: str | None = Field(default=None, max_length=16)
    temperature: float | None = Field(default=None, gt=0, le=5)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=1, le=1000)
    repetition_penalty: float | None = Field(default=None, gt=0, le=100)
    length_penalty: float | None = Field(default=None, ge=-100, le=100)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)

    @property
    def voice_id(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceId) else self.voice


def match_language(languages: Sequence[str], value: str | None) -> str | None:
    """The engine's code for ``value`` (case-insensitive; a bare code matches its regional
    form, "zh" -> "zh-cn"); None when the engine does not speak it."""
    if value is None:
        return languages[0]
    wanted = value.strip().lower()
    for code in languages:
        if code.lower() == wanted:
            return code
    for code in languages:
        if code.lower().split("-")[0] == wanted:
            return code
    return None
