"""The comfyui service's one settings class: the job worker's (Redis, Celery, WORKER_HEALTH_*),
model provisioning's (MODELS_DIR, HF_TOKEN, PROVISION_*), and its own (COMFYUI_*).

The seed's names keep their meaning: COMFYUI_PORT, COMFYUI_ARGS, UPDATE_NODES_ON_START; the
ENABLE_* / *_MODEL / WAN_* variables are read by the comfyui manifest from the environment."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

from pydantic import Field, field_validator

from genstack.core.settings import CommaList, JobWorkerSettings, StorageSettings
from genstack.provision.settings import ProvisionSettings


class ComfyUISettings(JobWorkerSettings, ProvisionSettings, StorageSettings):
    comfyui_dir: Path = Field(
        default=Path("/opt/comfyui/ComfyUI"),
        description="The ComfyUI checkout `genstack-comfyui start` runs (main.py in it); "
        "the image's by default.",
    )
    comfyui_python: Path = Field(
        default=Path(sys.executable),
        description="The interpreter that runs ComfyUI (default: the one running genstack).",
    )
    comfyui_listen: str = Field(
        default="127.0.0.1",
        description="Address ComfyUI listens on. It has no authentication: the container "
        "sets 0.0.0.0 and publishes the port on the host's loopback only.",
    )
    comfyui_port: int = Field(default=8188, ge=1, le=65535, description="ComfyUI's port.")
    comfyui_args: str = Field(
        default="", description="More ComfyUI arguments, appended last (shell-quoted)."
    )
    update_nodes_on_start: bool = Field(
        default=False,
        description="Seed toggle, an opt-in: at start, fast-forward every custom node that is "
        "a git checkout to its branch's upstream, install its requirements.txt if that changed, "
        "and load ComfyUI to check it; a node whose update fails any step is rolled back to the "
        "commit it had and reported. Off: the nodes stay at the image's pins.",
    )
    comfyui_constraints: Path = Field(
        default=Path("/opt/comfyui/constraints.txt"),
        description="pip constraints for installing an updated node's requirements "
        "(UPDATE_NODES_ON_START); the image's copy of services/comfyui/constraints.txt by "
        "default. Must exist when UPDATE_NODES_ON_START is true.",
    )
    comfyui_node_git_timeout_s: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="UPDATE_NODES_ON_START: time allowed to each git command (a fetch, a "
        "fast-forward) on one node.",
    )
    comfyui_node_install_timeout_s: float = Field(
        default=1200.0,
        gt=0,
        le=7200,
        description="UPDATE_NODES_ON_START: time allowed to installing one node's requirements.",
    )
    comfyui_node_check_timeout_s: float = Field(
        default=600.0,
        gt=0,
        le=3600,
        description="UPDATE_NODES_ON_START: time allowed to one import check (loading ComfyUI "
        "and every custom node once).",
    )
    comfyui_url: str = Field(
        default="http://127.0.0.1:8188", description="Where the worker reaches ComfyUI."
    )
    comfyui_worker_concurrency: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Jobs one worker runs at once (ComfyUI itself runs one prompt at a time; "
        "more keeps its queue full).",
    )
    comfyui_job_timeout_s: float = Field(
        default=4 * 3600, gt=0, description="A workflow still running after this fails."
    )
    comfyui_unavailable_grace_s: float = Field(
        default=30.0,
        gt=0,
        description="How long ComfyUI may be unreachable mid-job before the job gives up "
        "(it is retried later, as when ComfyUI is down at the start).",
    )
    comfyui_catalogue_refresh_s: float = Field(
        default=60.0,
        ge=0,
        description="How often the worker publishes ComfyUI's node catalogue (/object_info) "
        "to Redis, from which the gateway refuses a workflow with an unknown node, a "
        "missing input or a bad link at submission (0: not published, so not checked).",
    )
    comfyui_templates_dir: Path | None = Field(
        default=None,
        description="A folder of your own templates (<name>.yaml, the format of "
        "docs/comfyui.md), added to the built-in ones; one of the same name replaces it.",
    )
    comfyui_warmup: bool = Field(
        default=False,
        description="Run each available template once at its smallest size after start, so "
        "the first job does not pay for loading its models; /readyz says warm or not.",
    )
    comfyui_warmup_timeout_s: float = Field(
        default=900.0, gt=0, description="Time allowed for one template's warm-up run."
    )
    tts_voices_dir: Path = Field(
        default=Path("/data/voices"),
        description="The shared voice library (the speech servers' TTS_VOICES_DIR), where "
        "a VibeVoice job's voice names are found.",
    )
    comfyui_input_allow_networks: CommaList[str] = Field(
        default_factory=list,
        description="Networks (CIDR, comma list) inputs by URL may come from although they "
        "are private, loopback or link-local (refused otherwise).",
    )
    comfyui_input_max_mb: int = Field(
        default=512, ge=1, description="Largest input file fetched from a URL (MiB)."
    )
    comfyui_input_timeout_s: float = Field(
        default=60.0, gt=0, description="Time allowed to fetch one input URL."
    )

    @field_validator("comfyui_input_allow_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return value
