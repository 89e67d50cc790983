"""The chatterbox service's one settings class: the shared TTS settings (TTS_*), the job
worker's (Celery's, WORKER_HEALTH_*), and its own (CHATTERBOX_*)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from genstack.tts.settings import SpeechServiceSettings


class ChatterboxSettings(SpeechServiceSettings):
    chatterbox_host: str = Field(default="0.0.0.0", description="Address the server listens on.")  # noqa: S104 - the container's port
    chatterbox_port: int = Field(
        default=8004, ge=1, le=65535, description="chatterbox-tts-api's port."
    )
    chatterbox_model: Literal["english", "multilingual", "turbo"] = Field(
        default="english",
        description="english: ChatterboxTTS; multilingual: ChatterboxMultilingualTTS (23 "
        "languages); turbo: ChatterboxTurboTTS (English, paralinguistic tags like [laugh]).",
    )
    chatterbox_model_dir: Path = Field(
        default=Path("/data/models/chatterbox"),
        description="The checkpoint folder: used as is when it holds the model's files (a "
        "fine-tuned one too), else provisioned (Turbo's files go to its turbo/ subfolder).",
    )
    chatterbox_device: Literal["auto", "cuda", "cpu"] = Field(
        default="auto", description="auto: the GPU when there is one, else the CPU."
    )
    chatterbox_url: str = Field(
        default="http://127.0.0.1:8004", description="Where the worker reaches the server."
    )
    chatterbox_worker_concurrency: int = Field(
        default=1, ge=1, le=32, description="Jobs one worker runs at once."
    )
    chatterbox_busy_retry_s: float = Field(
        default=600.0,
        ge=0,
        description="How long the worker waits out a busy server (503) before retrying later.",
    )
