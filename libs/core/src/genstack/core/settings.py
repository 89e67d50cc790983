"""Settings shared by every genstack service.

Each service defines one settings class that inherits from :class:`CoreSettings` (and the
mixins it needs); values come from the environment (and an optional ``.env``), with the
seed system's variable names where one exists.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

T = TypeVar("T")


def split_commas(value: object) -> object:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; anything but a string passes unchanged."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


# A list read from one variable as a comma list (``GATEWAY_API_KEYS=k1,k2``), not as JSON.
CommaList = Annotated[list[T], NoDecode, BeforeValidator(split_commas)]


def _default_node_id() -> str:
    return socket.gethostname()


class CoreSettings(BaseSettings):
    """What every process needs: where Redis is, who this host is, how to log."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        # `R2_ENDPOINT=` in .env, or `${VAR:-}` in compose, means "not set", not "".
        env_ignore_empty=True,
    )

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis for the Celery broker, job records, job events and the upload ledger.",
    )
    node_id: str = Field(
        default_factory=_default_node_id,
        description="This host's name; the uploader consumes queue upload.<NODE_ID>.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
    )
    output_dir: Path = Field(
        default=Path("/data/outputs"), description="Where services write their outputs."
    )
    job_ttl_s: int = Field(
        default=7 * 24 * 3600,
        ge=1,
        description="Job records and their event streams expire this long after their last "
        "change. Every process that writes jobs (gateway, workers, uploader) must agree.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class StorageSettings(BaseSettings):
    """Where finished outputs go: R2 (any S3-compatible store) or a local folder."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    enable_r2_sync: bool | None = Field(
        default=None,
        description="Seed toggle. Unset: R2 when R2_* is complete, else local storage. "
        "false: always local. true: R2 required (start-up fails if R2_* is incomplete).",
    )
    r2_endpoint: str | None = Field(default=None, description="S3 endpoint URL of the bucket.")
    r2_bucket: str = Field(default="runpod", description="Target bucket.")
    r2_access_key_id: SecretStr | None = None
    r2_secret_access_key: SecretStr | None = None
    r2_region: str = Field(default="auto", description="R2 wants 'auto'; AWS wants a region.")
    r2_addressing_style: Literal["path", "virtual", "auto"] = "path"
    r2_part_size_mb: int = Field(default=16, ge=5, le=5120, description="Multipart part size.")
    r2_multipart_threshold_mb: int = Field(
        default=16, ge=5, description="Files at least this large go multipart."
    )
    r2_concurrency: int = Field(default=8, ge=1, le=64, description="Parallel parts per file.")
    r2_max_attempts: int = Field(default=8, ge=1, le=20, description="botocore retry attempts.")
    r2_connect_timeout_s: float = Field(default=10.0, gt=0)
    r2_read_timeout_s: float = Field(default=60.0, gt=0)
    storage_dir: Path = Field(
        default=Path("/data/storage"),
        description="Local object store used when R2 is not configured (same keys as R2).",
    )
    presign_expiry_s: int = Field(default=3600, ge=1, le=7 * 24 * 3600)

    @property
    def r2_configured(self) -> bool:
        return bool(
            self.r2_endpoint
            and self.r2_bucket
            and self.r2_access_key_id
            and self.r2_secret_access_key
        )

    def storage_backend(self) -> Literal["s3", "local"]:
        if self.enable_r2_sync is False:
            return "local"
        if self.r2_configured:
            return "s3"
        if self.enable_r2_sync:
            missing = [
                name
                for name, value in (
                    ("R2_ENDPOINT", self.r2_endpoint),
                    ("R2_BUCKET", self.r2_bucket),
                    ("R2_ACCESS_KEY_ID", self.r2_access_key_id),
                    ("R2_SECRET_ACCESS_KEY", self.r2_secret_access_key),
                )
                if not value
            ]
            raise ValueError(f"ENABLE_R2_SYNC=true but {', '.join(missing)} not set")
        return "local"


class CelerySettings(BaseSettings):
    """Reliability knobs of the Celery app every worker shares."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    celery_visibility_timeout_s: int = Field(
        default=4 * 3600,
        ge=60,
        description="Redis redelivers an unacknowledged task after this long: keep it above "
        "the longest task (long video jobs), or a running task is started a second time.",
    )
    celery_soft_shutdown_s: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, running tasks get this long to finish before they are "
        "requeued. Keep the container's stop grace period above it.",
    )


class JobWorkerSettings(CoreSettings, CelerySettings):
    """What every job worker (``genstack-xtts worker``, ...) needs: Redis, its host, Celery's
    knobs, and its health port."""

    worker_health_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - the container's health port
        description="Address of the job worker's /healthz, /readyz and /metrics.",
    )
    worker_health_port: int = Field(
        default=9102,
        ge=0,
        le=65535,
        description="Port of the job worker's /healthz, /readyz and /metrics; 0: none (for "
        "several workers sharing one network namespace).",
    )
