"""What every `tts` job shares, whichever engine speaks it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator

from genstack.core.contracts.common import Params, SafeName

# A job may narrate a chapter (about 100 minutes of speech); the OpenAI route is stricter.
# The job's params live in its Redis record and in every job listing, so not more.
MAX_JOB_TEXT_CHARS = 100_000

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]

# Model names OpenAI clients send by habit; each TTS backend answers them with its own model.
OPENAI_TTS_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")

# Sampling fields with their limits, shared by the job params here and the TTS servers'
# request (genstack.tts.schemas), so a job the gateway takes is one the server takes.
Speed = Annotated[float, Field(ge=0.25, le=4.0)]
Temperature = Annotated[float, Field(gt=0, le=5)]
TopP = Annotated[float, Field(gt=0, le=1)]
TopK = Annotated[int, Field(ge=1, le=1000)]
RepetitionPenalty = Annotated[float, Field(gt=0, le=100)]
LengthPenalty = Annotated[float, Field(ge=-100, le=100)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
LanguageCode = Annotated[str, Field(max_length=16)]


def check_language(languages: Sequence[str], engine: str, value: str) -> str:
    """A job's ``language`` as the server will match it (:func:`match_language`), so the
    server takes what passes here; anything else fails naming the engine's languages. For
    an engine's field type: ``Annotated[LanguageCode, AfterValidator(partial(...))]``."""
    code = match_language(languages, value)
    if code is None:
        raise ValueError(f"{engine} speaks {', '.join(languages)}, not {value!r}")
    return code


def match_language(languages: Sequence[str], value: str | None) -> str | None:
    """The engine's code for ``value`` (case-insensitive; a bare code matches its regional
    form, "zh" -> "zh-cn"); the first language when ``value`` is None; None when the engine
    does not speak it."""
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


class SpeechParams(Params):
    """A `tts` job: the body of the backend's own /v1/audio/speech (genstack.tts's job
    handler sends it there part by part), less ``model``. Sampling fields every genstack TTS
    engine takes are here; each backend's module adds its engine's own."""

    input: str = Field(
        min_length=1,
        max_length=MAX_JOB_TEXT_CHARS,
        # xtts-api-server's clients (SillyTavern) call the text ``text``.
        validation_alias=AliasChoices("input", "text"),
        description="Text to speak (``text`` is accepted too).",
    )
    voice: SafeName = Field(description='A voice the backend knows (or OpenAI\'s {"id": ...}).')
    response_format: SpeechFormat = "mp3"
    speed: Speed = 1.0
    temperature: Temperature | None = None
    seed: Seed | None = None

    @field_validator("voice", mode="before")
    @classmethod
    def _voice_object(cls, value: object) -> object:
        # OpenAI's newer shape for a voice, {"id": "..."}, means the same as the name.
        if isinstance(value, dict) and set(value) == {"id"}:
            return value["id"]
        return value
