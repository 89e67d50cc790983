"""Uploader settings: the one settings class of this service."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from genstack.core.settings import CelerySettings, CommaList, CoreSettings, StorageSettings

# The seed's r2_sync.sh pattern set: png jpg jpeg webp mp4 webm gif wav mp3 flac.
SEED_PATTERNS = ("png", "jpg", "jpeg", "webp", "mp4", "webm", "gif", "wav", "mp3", "flac")


class UploaderSettings(CoreSettings, StorageSettings, CelerySettings):
    upload_watch_dirs: CommaList[Path] = Field(
        default_factory=list, description="Extra folders to watch besides OUTPUT_DIR (comma list)."
    )
    upload_extensions: CommaList[str] = Field(
        default_factory=lambda: list(SEED_PATTERNS),
        description="File extensions that are uploaded (comma list, no dots).",
    )
    upload_key_prefix: str = Field(default="outputs", pattern=r"^[A-Za-z0-9_./-]*$")
    upload_workers: int = Field(default=4, ge=1, le=64, description="Files uploaded at once.")
    upload_settle_s: float = Field(
        default=0.05, ge=0, le=60, description="Quiet time after a close/move event."
    )
    upload_stable_s: float = Field(
        default=2.0,
        ge=0,
        description="A file found by a rescan is uploaded once unmodified for this long.",
    )
    upload_rescan_interval_s: float = Field(default=60.0, ge=0.2)
    upload_requeue_after_s: float = Field(
        default=600.0, ge=1, description="A rescan re-queues a file still pending after this."
    )
    upload_max_retries: int = Field(default=8, ge=0, le=100)
    upload_retry_base_s: float = Field(default=1.0, gt=0)
    upload_retry_max_s: float = Field(default=120.0, gt=0)
    upload_max_file_gb: float = Field(default=200.0, gt=0, description="Larger files refused.")
    upload_delete_after_verify: bool = False
    upload_metrics_host: str = "0.0.0.0"  # noqa: S104 - the container's health port
    upload_metrics_port: int = Field(default=9101, ge=0, le=65535)

    @field_validator("upload_extensions")
    @classmethod
    def _normalise_extensions(cls, value: list[str]) -> list[str]:
        return sorted({ext.lower().lstrip(".") for ext in value})

    @property
    def roots(self) -> list[Path]:
        return [self.output_dir, *self.upload_watch_dirs]
