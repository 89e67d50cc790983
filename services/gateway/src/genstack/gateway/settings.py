"""Gateway settings: the one settings class of this service."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from genstack.core.contracts import chatterbox, comfyui, xtts
from genstack.core.jobs import JobType
from genstack.core.settings import CelerySettings, CommaList, CoreSettings, StorageSettings
from genstack.gateway.webhooks.signing import decode_secret

MiB = 1024 * 1024
MIN_API_KEY_CHARS = 16
_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class BackendConfig(BaseModel):
    """One backend: where its jobs queue, its params module, and (for the OpenAI speech
    route) the base URL of its model server."""

    module: str = Field(
        description="Params module: a name under genstack.gateway.backends, or a dotted path."
    )
    queue: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="Model server base URL; its /v1/audio/speech and /v1/audio/voices are used.",
    )
    models: list[str] = Field(
        default_factory=list, description="OpenAI `model` names that route to this backend."
    )
    types: list[JobType] | None = Field(
        default=None, description="Job types it takes (default: every type its module defines)."
    )
    max_queue_depth: int | None = Field(
        default=None, ge=1, description="Overrides GATEWAY_MAX_QUEUE_DEPTH for its queue."
    )


class GatewaySettings(CoreSettings, StorageSettings, CelerySettings):
    # serving ------------------------------------------------------------------------------
    gateway_host: str = "0.0.0.0"  # noqa: S104 - the container's published port
    gateway_port: int = Field(default=8080, ge=0, le=65535)
    gateway_workers: int = Field(default=1, ge=1, le=64, description="Server processes.")
    gateway_threads: int = Field(
        default=64, ge=4, le=1024, description="Threads for blocking Redis/Celery/storage calls."
    )
    gateway_max_concurrency: int = Field(
        default=4096, ge=16, description="Open requests per process (SSE included); past it 503."
    )
    gateway_public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        description="Base of URLs the gateway hands out (file links); default: the request's.",
    )
    gateway_forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Proxies whose X-Forwarded-* headers are trusted (comma list, or *).",
    )
    # auth ---------------------------------------------------------------------------------
    gateway_api_keys: CommaList[SecretStr] = Field(
        default_factory=list, description="Accepted API keys (comma list)."
    )
    gateway_api_keys_file: Path | None = Field(
        default=None, description="File with more API keys, one a line (# comments)."
    )
    gateway_auth_disabled: bool = Field(
        default=False, description="Serve without API keys (only behind your own auth)."
    )
    gateway_shared_jobs: bool = Field(
        default=False,
        description="Every API key sees every job; default: a key sees only the jobs it made.",
    )
    gateway_public_docs: bool = Field(default=False, description="/docs and the schema open.")
    gateway_public_metrics: bool = Field(default=False, description="/metrics open.")
    gateway_cors_origins: CommaList[str] = Field(
        default_factory=list, description="Origins allowed by CORS (comma list); none: no CORS."
    )
    # limits -------------------------------------------------------------------------------
    gateway_max_body_bytes: int = Field(default=1 * MiB, ge=1024)
    gateway_max_job_body_bytes: int = Field(
        default=8 * MiB, ge=1024, description="POST /v1/jobs (ComfyUI workflows are large)."
    )
    gateway_max_speech_input_chars: int = Field(default=4096, ge=1, le=1_000_000)
    gateway_max_queue_depth: int = Field(
        default=1000, ge=1, description="Messages waiting in one queue; past it 429."
    )
    gateway_retry_after_s: int = Field(default=10, ge=1, le=3600)
    gateway_idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    gateway_image_wait_s: float = Field(
        default=300.0, gt=0, le=3600, description="/v1/images/generations waits this long."
    )
    gateway_speech_wait_s: float = Field(
        default=300.0,
        gt=0,
        le=3600,
        description="/v1/audio/speech waits this long for a speech job (model vibevoice).",
    )
    gateway_sse_max_s: float = Field(
        default=3600.0, gt=0, description="An event stream ends after this; clients resume."
    )
    gateway_max_b64_image_bytes: int = Field(default=32 * MiB, ge=1024)
    # backends -----------------------------------------------------------------------------
    gateway_backends: dict[str, BackendConfig] | None = Field(
        default=None, description="JSON map name -> backend; default: xtts, chatterbox, comfyui."
    )
    gateway_enabled_backends: CommaList[str] | None = Field(
        default=None, description="Serve only these backends (comma list); default: all."
    )
    gateway_default_tts_backend: str = Field(default="xtts", pattern=_NAME)
    gateway_default_image_backend: str = Field(default="comfyui", pattern=_NAME)
    gateway_default_video_backend: str = Field(default="comfyui", pattern=_NAME)
    gateway_default_workflow_backend: str = Field(default="comfyui", pattern=_NAME)
    xtts_url: str = Field(default="http://xtts:8020", pattern=r"^https?://\S+$")
    chatterbox_url: str = Field(default="http://chatterbox:8004", pattern=r"^https?://\S+$")
    tts_api_keys: CommaList[SecretStr] = Field(
        default_factory=list,
        description="The TTS servers' keys (the variable they read): the gateway sends the "
        "first to them, as their workers do. Empty: the servers need none.",
    )
    gateway_backend_connect_timeout_s: float = Field(default=5.0, gt=0)
    gateway_backend_read_timeout_s: float = Field(
        default=300.0, gt=0, description="Longest silence from a backend mid-response."
    )
    gateway_voices_timeout_s: float = Field(default=3.0, gt=0)
    gateway_node_catalogue_cache_s: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="How long the ComfyUI node catalogue and templates the workers publish "
        "are kept before they are read again (0: at every submission).",
    )
    # input files (ComfyUI jobs' images, videos, voices) ---------------------------------------
    gateway_input_allow_networks: CommaList[str] = Field(
        default_factory=list,
        description="Private networks input file URLs may reach anyway (CIDR comma list).",
    )
    gateway_input_max_mb: int = Field(
        default=50, ge=1, le=4096, description="Largest input file, by URL or upload (MiB)."
    )
    gateway_input_timeout_s: float = Field(
        default=30.0, gt=0, le=600, description="Time allowed to fetch one input file by URL."
    )
    # webhooks -----------------------------------------------------------------------------
    gateway_webhook_secret: SecretStr | None = Field(
        default=None, description="Standard Webhooks secret, whsec_<base64>; none: no webhooks."
    )
    gateway_webhook_allow_networks: CommaList[str] = Field(
        default_factory=list,
        description="Private networks webhooks may reach anyway (CIDR comma list).",
    )
    gateway_webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    gateway_webhook_retry_base_s: float = Field(default=2.0, gt=0)
    gateway_webhook_retry_max_s: float = Field(default=900.0, gt=0)
    gateway_webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    gateway_webhook_concurrency: int = Field(default=32, ge=1, le=1024)
    gateway_webhook_claim_idle_s: float = Field(
        default=60.0, ge=1, description="A delivery left this long by a dead replica is taken."
    )
    # artifact links -----------------------------------------------------------------------
    gateway_files_signing_key: SecretStr | None = Field(
        default=None,
        description="Key for /v1/files links; default: a random key kept in Redis (shared).",
    )

    @field_validator("gateway_webhook_allow_networks", "gateway_input_allow_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # ValueError names the bad one
        return value

    @field_validator("gateway_webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_secret(value.get_secret_value())  # WebhookSecretError says what is wrong
        return value

    @property
    def input_max_bytes(self) -> int:
        return self.gateway_input_max_mb * MiB

    @model_validator(mode="after")
    def _keys_present(self) -> GatewaySettings:
        for key in self.gateway_api_keys:
            if len(key.get_secret_value()) < MIN_API_KEY_CHARS:
                raise ValueError(f"GATEWAY_API_KEYS: keys must be {MIN_API_KEY_CHARS}+ chars")
        return self

    def api_keys(self) -> list[str]:
        """Keys from GATEWAY_API_KEYS and GATEWAY_API_KEYS_FILE (read now)."""
        keys = [key.get_secret_value() for key in self.gateway_api_keys]
        if self.gateway_api_keys_file is not None:
            for line in self.gateway_api_keys_file.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    if len(line) < MIN_API_KEY_CHARS:
                        raise ValueError(
                            f"{self.gateway_api_keys_file}: keys must be {MIN_API_KEY_CHARS}+ chars"
                        )
                    keys.append(line)
        return keys

    def backend_configs(self) -> dict[str, BackendConfig]:
        configs = (
            self.gateway_backends
            if self.gateway_backends is not None
            else {
                "xtts": BackendConfig(
                    module="xtts", queue=xtts.QUEUE, url=self.xtts_url, models=list(xtts.MODELS)
                ),
                "chatterbox": BackendConfig(
                    module="chatterbox",
                    queue=chatterbox.QUEUE,
                    url=self.chatterbox_url,
                    models=list(chatterbox.MODELS),
                ),
                "comfyui": BackendConfig(
                    module="comfyui",
                    queue=comfyui.QUEUE,
                    models=[*comfyui.MODELS, *comfyui.SPEECH_MODELS],
                ),
            }
        )
        if self.gateway_enabled_backends is not None:
            unknown = set(self.gateway_enabled_backends) - set(configs)
            if unknown:
                raise ValueError(f"GATEWAY_ENABLED_BACKENDS names unknown backends: {unknown}")
            configs = {k: v for k, v in configs.items() if k in self.gateway_enabled_backends}
        return configs
