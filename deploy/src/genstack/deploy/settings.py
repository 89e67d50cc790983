"""The deploy package's one settings class: what `make up` and the pod image read to decide
which services run where. Every other variable (R2_*, HF_TOKEN, the model selection, ...)
passes through untouched to the services, which read it themselves."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DeploySettings"]


class DeploySettings(BaseSettings):
    """Built with :meth:`from_env` from the process environment only: `make up` does not read
    .env, whose values (REDIS_URL=redis://redis:6379/0, /data/...) are compose.yaml's."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    data_dir: Path | None = Field(
        default=None,
        description="Where `make up` (and the pod) keep Redis's AOF, outputs, local storage, "
        "models, voices, logs and the generated API key. Default: ./data for `make up`; in "
        "the pod, /workspace/genstack with a volume, else /data.",
    )
    enable_xtts: bool = Field(default=False, description="Run the XTTS model server + worker.")
    enable_chatterbox: bool = Field(
        default=False, description="Run the Chatterbox model server + worker."
    )
    enable_comfyui: bool | None = Field(
        default=None,
        description="Run ComfyUI + its worker. Default: on when COMFYUI_DIR names a checkout "
        "(always in the pod image).",
    )
    enable_jupyter: bool | None = Field(
        default=None,
        description="Pod: JupyterLab on 8888. Default: on when JUPYTER_PASSWORD is set.",
    )
    jupyter_password: SecretStr | None = Field(
        default=None, description="Pod: JupyterLab's token (its only authentication)."
    )
    public_key: str | None = Field(
        default=None,
        description="Pod: SSH public key(s) for root (RunPod's convention); sshd runs on 22 "
        "only when set.",
    )
    storage_mode: Literal["auto", "ephemeral", "persistent"] = Field(
        default="auto",
        description="Pod, seed meaning: where models live. persistent: on the volume "
        "(/workspace); ephemeral: on the container disk; auto: the volume when one is mounted.",
    )
    redis_url: str | None = Field(
        default=None, description="An existing Redis: then none is started."
    )
    redis_port: int = Field(default=6379, ge=1, le=65535, description="Own Redis's port.")
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    xtts_port: int = Field(default=8020, ge=1, le=65535)
    chatterbox_port: int = Field(default=8004, ge=1, le=65535)
    comfyui_port: int = Field(default=8188, ge=1, le=65535)
    upload_metrics_port: int = Field(default=9101, ge=1, le=65535)
    worker_health_port: int = Field(
        default=9102,
        ge=1,
        le=65535,
        description="The first job worker's health port; each further worker takes the next.",
    )
    comfyui_dir: Path | None = None
    comfyui_python: Path | None = None
    models_dir: Path | None = None
    cuda_visible_devices: str | None = Field(
        default=None,
        description="GPUs to spread the model servers over (NVML indices or UUIDs; -1: none, "
        "CPU only). Default: every GPU NVML lists.",
    )
    deploy_logs: Literal["console", "files"] | None = Field(
        default=None,
        description="Where the services' output goes: console (supervisord's stdout), or "
        "files under DATA_DIR/logs. Default: files for `make up` (its console shows state "
        "changes, readiness and the log tail of a failed service), console in the pod.",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """Build from ``env`` only (not .env): names match the fields case-insensitively;
        empty values count as unset."""
        names = set(cls.model_fields)
        values = {k.lower(): v for k, v in env.items() if k.lower() in names and v != ""}
        return cls.model_validate(values)
