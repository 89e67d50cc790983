"""What clients send to a TTS server: OpenAI's speech request (plus engine fields) and voice
ids. Field limits, model aliases and language matching come from the speech contract
(genstack.core.contracts.speech), so the server takes every job the gateway takes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from genstack.core.contracts.speech import (
    LanguageCode,
    LengthPenalty,
    RepetitionPenalty,
    Seed,
    SpeechFormat,
    Speed,
    Temperature,
    TopK,
    TopP,
)


class VoiceId(BaseModel):
    id: str = Field(min_length=1, max_length=256)


class SpeechRequest(BaseModel):
    """OpenAI's request plus engine fields; fields of the engine's own are validated by the
    engine, others are ignored (as OpenAI clients add fields of newer API versions)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(default=None, max_length=200)
    input: str = Field(min_length=1)
    voice: str | VoiceId
    response_format: SpeechFormat | None = Field(
        default=None, description="Default: the server's (mp3, OpenAI's, unless it says)."
    )
    speed: Speed = 1.0
    stream_format: Literal["audio", "sse"] = "audio"
    instructions: str | None = Field(
        default=None, max_length=4096, description="Accepted for compatibility; unused."
    )
    stream: bool = Field(
        default=True,
        description="genstack: false waits for the whole file (exact lengths in its header, "
        "the engine's best-quality mode) instead of sending audio as it is made.",
    )
    language: LanguageCode | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_k: TopK | None = None
    repetition_penalty: RepetitionPenalty | None = None
    length_penalty: LengthPenalty | None = None
    seed: Seed | None = None

    @property
    def voice_id(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceId) else self.voice
