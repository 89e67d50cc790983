"""Settings every TTS model server shares (TTS_*); each service's one settings class inherits
this and adds its own (XTTS_*, CHATTERBOX_*), so one .env configures every TTS server alike."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from genstack.core.settings import CommaList, CoreSettings, JobWorkerSettings


class TTSSettings(CoreSettings):
    """The shared HTTP surface's limits, auth, CORS and queueing."""

    tts_api_keys: CommaList[SecretStr] = Field(
        default_factory=list,
        description="Bearer keys the TTS servers accept (comma list). Empty: no auth. "
        "/healthz and /readyz stay open.",
    )
    tts_public_metrics: bool = Field(
        default=True, description="/metrics open without a key (for Prometheus)."
    )
    tts_public_docs: bool = Field(default=True, description="/docs and the schema open.")
    tts_cors_origins: CommaList[str] = Field(
        # SillyTavern's default address: its XTTS provider calls the server from the browser.
        default_factory=lambda: ["http://localhost:8000", "http://127.0.0.1:8000"],
        description="Browser origins allowed by CORS (comma list; '*' for any; 'none': no CORS).",
    )
    tts_max_input_chars: int = Field(
        default=4096, ge=1, le=100_000, description="Longest `input` text accepted."
    )
    tts_voices_dir: Path = Field(
        default=Path("/data/voices"),
        description="The voice library (reference audio), shared by every TTS server.",
    )
    tts_max_voice_upload_mb: float = Field(
        default=10.0, gt=0, le=200, description="Largest reference-audio upload."
    )
    tts_min_voice_seconds: float = Field(default=1.0, ge=0.1, description="Shortest reference.")
    tts_max_voice_seconds: float = Field(default=60.0, gt=0, description="Longest reference.")
    tts_max_voices: int = Field(default=500, ge=1, description="Most voices in the library.")
    tts_voice_cache_size: int = Field(
        default=32, ge=1, le=10_000, description="Voice conditionings kept in memory (LRU)."
    )
    tts_max_queue: int = Field(
        default=16,
        ge=0,
        description="Requests allowed to wait for the model; more are refused at once (503).",
    )
    tts_queue_timeout_s: float = Field(
        default=60.0, gt=0, description="Longest wait for the model before a 503."
    )

    @field_validator("tts_cors_origins")
    @classmethod
    def _no_cors(cls, value: list[str]) -> list[str]:
        # An empty variable means "default" (CoreSettings ignores empty values).
        return [] if [v.lower() for v in value] == ["none"] else value

    @property
    def max_upload_bytes(self) -> int:
        return int(self.tts_max_voice_upload_mb * 1024 * 1024)


class SpeechServiceSettings(TTSSettings, JobWorkerSettings):
    """A TTS model server and its queue worker (the job worker's Celery and WORKER_HEALTH_*
    settings too): what each TTS service's settings class adds its own fields to."""
