"""ComfyUI: queue comfyui; image and video from templates, or a raw API-format workflow."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from genstack.core.contracts.common import Params, ParamsMap, SafeName
from genstack.core.jobs import JobType

QUEUE = "comfyui"
MODELS = ("comfyui",)
# Model names OpenAI clients send by habit; the default image backend answers them.
OPENAI_IMAGE_ALIASES = ("dall-e-2", "dall-e-3", "gpt-image-1")

MAX_PROMPT_CHARS = 10_000
MAX_WORKFLOW_NODES = 2000


class _Generation(Params):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    steps: int | None = Field(default=None, ge=1, le=200)
    cfg: float | None = Field(default=None, ge=0.0, le=50.0)


class ImageParams(_Generation):
    template: SafeName = Field(default="default", description="Workflow template name.")
    width: int = Field(default=1024, ge=64, le=4096, multiple_of=8)
    height: int = Field(default=1024, ge=64, le=4096, multiple_of=8)
    n: int = Field(default=1, ge=1, le=8, description="Images in the batch.")


class VideoParams(_Generation):
    template: SafeName = Field(default="wan-t2v", description="Workflow template name.")
    width: int = Field(default=832, ge=64, le=2048, multiple_of=8)
    height: int = Field(default=480, ge=64, le=2048, multiple_of=8)
    frames: int = Field(default=81, ge=1, le=1000)
    fps: int = Field(default=16, ge=1, le=60)


class WorkflowParams(Params):
    workflow: dict[str, dict[str, Any]] = Field(
        description="ComfyUI API-format graph: node id -> {class_type, inputs}."
    )

    @field_validator("workflow")
    @classmethod
    def _graph(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not value:
            raise ValueError("the workflow has no nodes")
        if len(value) > MAX_WORKFLOW_NODES:
            raise ValueError(f"the workflow has more than {MAX_WORKFLOW_NODES} nodes")
        for node_id, node in value.items():
            if not isinstance(node.get("class_type"), str) or not node["class_type"]:
                raise ValueError(f"node {node_id!r} has no class_type")
            if not isinstance(node.get("inputs", {}), dict):
                raise ValueError(f"node {node_id!r}: inputs must be an object")  # noqa: TRY004
        return value


PARAMS: ParamsMap = {
    JobType.IMAGE: ImageParams,
    JobType.VIDEO: VideoParams,
    JobType.WORKFLOW: WorkflowParams,
}
