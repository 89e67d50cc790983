"""Settings of model provisioning (environment variables; services inherit or embed them)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from genstack.provision.downloader import DownloaderConfig
from genstack.provision.http import HostToken

__all__ = ["ProvisionSettings"]


class ProvisionSettings(BaseSettings):
    """Where models go, how to reach the hubs, how hard to pull.

    Services mix this into their own settings class; :meth:`from_env` builds one from an
    explicit mapping (what :func:`genstack.provision.ensure_models` does with ``env``).
    """

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    models_dir: Path = Field(
        default=Path("/data/models"),
        description="ComfyUI's models folder (checkpoints/, vae/, ...): the root of a manifest "
        "without its own (`root:`), such as comfyui.",
    )
    provision_manifests: str = Field(
        default="comfyui",
        description="Manifests genstack-provision provisions by default (comma list).",
    )
    hf_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("hf_token", "hugging_face_hub_token"),
        description="Hugging Face token, sent only to HF_ENDPOINT (gated/private repos).",
    )
    hf_endpoint: str = Field(default="https://huggingface.co", description="Hub base URL.")
    civitai_api_key: SecretStr | None = Field(
        default=None, description="CivitAI key, sent only to CIVITAI_ENDPOINT."
    )
    civitai_endpoint: str = Field(default="https://civitai.com", description="CivitAI base URL.")
    provision_connections: int = Field(
        default=16,
        ge=1,
        le=64,
        description="HTTP connections in all; each server starts with all of them (a CDN that "
        "caps each connection is only fast with many) and gets fewer only when it pushes back "
        "or more connections move fewer bytes.",
    )
    provision_parallel_files: int = Field(
        default=4, ge=1, le=32, description="Files with blocks being handed out at once."
    )
    provision_piece_mb: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="The most bytes one ranged request asks for, in MiB (default: no cap; "
        "requests are a file's fair share of what is left, shorter towards its end).",
    )
    provision_backoff: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="The fraction of a server's connections kept when it pushes back (429, "
        "503, Retry-After, refused or reset connections).",
    )
    provision_backoff_hold_s: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="After a pushback, the seconds (or the Retry-After, if longer) before "
        "connections are added back; a level that drew pushback is retried after this long, "
        "doubled each time it fails again.",
    )
    provision_probe_step: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Connections added back per step (a step every two seconds at most: one "
        "second for the new connections to start, one to judge them).",
    )
    provision_probe_fall: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="A step whose throughput falls by more than this fraction is undone.",
    )
    provision_retries: int = Field(default=8, ge=0, le=50, description="Retries per range.")
    provision_verify_attempts: int = Field(
        default=3, ge=1, le=10, description="Downloads of a file whose sha256 keeps mismatching."
    )
    provision_stall_timeout_s: float = Field(
        default=30.0, gt=0, le=600, description="A transfer under 256 KiB in this long is cut."
    )
    provision_retry_base_s: float = Field(default=0.5, gt=0, le=60)
    provision_min_free_gb: float = Field(
        default=2.0, ge=0, description="Free disk to keep after the plan, in GB."
    )
    provision_fsync: bool = Field(
        default=False,
        description="fsync each file before it is renamed and recorded. Off by default: on "
        "ext4/XFS a crash leaves an unsynced file short, which the ledger's size check "
        "catches; turn it on for filesystems without that guarantee.",
    )
    provision_progress: Literal["auto", "bar", "log", "off"] = Field(
        default="auto", description="auto: rich bars on a terminal, log lines otherwise."
    )
    provision_log_interval_s: float = Field(default=10.0, gt=0)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """Build from ``env`` only (not os.environ, not .env): names are matched
        case-insensitively to the fields (and their aliases)."""
        names = set(cls.model_fields) | {"hugging_face_hub_token"}
        values = {k.lower(): v for k, v in env.items() if k.lower() in names and v != ""}
        return cls.model_validate(values)

    def tokens(self) -> list[HostToken]:
        tokens = []
        if self.hf_token is not None:
            tokens.append(HostToken(self.hf_endpoint, self.hf_token.get_secret_value()))
        if self.civitai_api_key is not None:
            tokens.append(HostToken(self.civitai_endpoint, self.civitai_api_key.get_secret_value()))
        return tokens

    def downloader_config(self) -> DownloaderConfig:
        return DownloaderConfig(
            connections=self.provision_connections,
            max_files=self.provision_parallel_files,
            piece_size=None if self.provision_piece_mb is None else self.provision_piece_mb * 2**20,
            retries=self.provision_retries,
            verify_attempts=self.provision_verify_attempts,
            retry_base_s=self.provision_retry_base_s,
            stall_timeout_s=self.provision_stall_timeout_s,
            fsync=self.provision_fsync,
            backoff=self.provision_backoff,
            backoff_hold_s=self.provision_backoff_hold_s,
            probe_step=self.provision_probe_step,
            probe_fall=self.provision_probe_fall,
        )
