"""Field types the params modules share."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

MAX_JOB_TEXT_CHARS = 100_000  # a job may narrate a chapter; the OpenAI route is stricter
MAX_PROMPT_CHARS = 10_000

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


def _safe_name(value: str) -> str:
    # Voices and templates are names inside the backend's own folder, never paths.
    if "/" in value or "\\" in value or value.startswith(".") or "\x00" in value:
        raise ValueError("must be a plain name, not a path")
    return value


SafeName = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_safe_name)]


class Params(BaseModel):
    """Base of every params model: unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class SpeechParams(Params):
    """A TTS job: the body of the backend's own /v1/audio/speech (genstack.tts's job
    handler sends it there part by part), less ``model``. Sampling fields every genstack TTS
    engine takes are here; each backend module adds its engine's own."""

    input: str = Field(min_length=1, max_length=MAX_JOB_TEXT_CHARS, description="Text to speak.")
    voice: SafeName = Field(description='A voice the backend knows (or OpenAI\'s {"id": ...}).')
    response_format: SpeechFormat = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    temperature: float | None = Field(default=None, gt=0, le=5)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)

    @field_validator("voice", mode="before")
    @classmethod
    def _voice_object(cls, value: object) -> object:
        # OpenAI's newer shape for a voice, {"id": "..."}, means the same as the name.
        if isinstance(value, dict) and set(value) == {"id"}:
            return value["id"]
        return value
