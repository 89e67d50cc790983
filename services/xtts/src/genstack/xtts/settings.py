"""The xtts service's one settings class: the shared TTS settings (TTS_*), the job worker's
(Celery's, WORKER_HEALTH_*), and its own (XTTS_*)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from genstack.tts.settings import SpeechServiceSettings


class XttsSettings(SpeechServiceSettings):
    xtts_host: str = Field(default="0.0.0.0", description="Address the server listens on.")  # noqa: S104 - the container's port
    xtts_port: int = Field(default=8020, ge=1, le=65535, description="xtts-api-server's port.")
    xtts_model_dir: Path = Field(
        default=Path("/data/models/xtts"),
        description="XTTS v2 checkpoint (config.json, model.pth, vocab.json, "
        "speakers_xtts.pth): used as is when complete (a fine-tuned one too), provisioned "
        "when not.",
    )
    xtts_device: Literal["auto", "cuda", "cpu"] = Field(
        default="auto", description="auto: the GPU when there is one, else the CPU."
    )
    xtts_deepspeed: bool = Field(
        default=False, description="DeepSpeed inference kernels (needs deepspeed installed)."
    )
    xtts_stream_chunk_size: int = Field(
        default=20,
        ge=5,
        le=400,
        description="GPT tokens per streamed chunk (smaller: earlier first audio, more joins).",
    )
    xtts_public_url: str | None = Field(
        default=None,
        description="Base URL clients reach this server at, for /speakers preview links "
        "(default: the address the request came to).",
    )
    xtts_url: str = Field(
        default="http://127.0.0.1:8020", description="Where the worker reaches the server."
    )
    xtts_worker_concurrency: int = Field(
        default=1, ge=1, le=32, description="Jobs one worker runs at once."
    )
    xtts_busy_retry_s: float = Field(
        default=600.0,
        ge=0,
        description="How long the worker waits out a busy server (503) before retrying later.",
    )
