"""ComfyUI: queue comfyui; image and video from templates, or a raw API-format workflow."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, AliasChoices, Field, field_validator

from genstack.core.contracts.common import Params, ParamsMap, SafeName
from genstack.core.contracts.speech import MAX_JOB_TEXT_CHARS, Temperature, TopP
from genstack.core.jobs import JobType

QUEUE = "comfyui"
MODELS = ("comfyui",)
# Speech models its `tts` jobs (VibeVoice templates) answer for POST /v1/audio/speech.
SPEECH_MODELS = ("vibevoice",)
# Model names OpenAI clients send by habit; the default image backend answers them.
OPENAI_IMAGE_ALIASES = ("dall-e-2", "dall-e-3", "gpt-image-1")

MAX_PROMPT_CHARS = 10_000
MAX_WORKFLOW_NODES = 2000


def _model_file(value: str) -> str:
    # A file of one of ComfyUI's model folders, as ComfyUI names it (subfolders allowed):
    # never absolute, never up and out.
    parts = value.replace("\\", "/").split("/")
    if value.startswith("/") or ".." in parts or "\x00" in value or "" in parts:
        raise ValueError("must be a file name inside the model folder")
    return value


def _input_file(value: str) -> str:
    # An http(s) URL (fetched and checked at submission) or the key of a stored object (an
    # earlier job's artifact, or what the gateway stored from a URL or an upload).
    if value.lower().startswith(("http://", "https://")):
        return value
    parts = value.split("/")
    if value.startswith("/") or ".." in parts or "\\" in value or "\x00" in value:
        raise ValueError("must be an http(s) URL or the key of a stored file (an artifact)")
    return value


ModelFile = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_model_file)]
InputFile = Annotated[
    str,
    Field(min_length=1, max_length=2048, description="http(s) URL or an artifact's key."),
    AfterValidator(_input_file),
]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
MAX_LORAS = 8
# Params that name an input file: the gateway fetches a URL, checks it decodes, stores it
# and passes its key; the worker hands the stored file to ComfyUI.
INPUT_FILE_PARAMS = ("image", "image2", "image3", "end_image", "control_video")
# What each input file must be (the top-level MIME type the gateway checks it decodes as);
# a VibeVoice job's voices that are URLs (or stored keys) are audio.
INPUT_FILE_KINDS = {
    "image": "image",
    "image2": "image",
    "image3": "image",
    "end_image": "image",
    "control_video": "video",
    "voice": "audio",
    "voices": "audio",
}
# What ComfyUI's audio save nodes write (SaveAudio, SaveAudioMP3, SaveAudioOpus): a
# VibeVoice job answers in one of these.
VibeVoiceFormat = Literal["mp3", "opus", "flac"]
VIBEVOICE_FORMATS: tuple[str, ...] = get_args(VibeVoiceFormat)


class Lora(Params):
    name: ModelFile = Field(description="A file of the loras folder (GET /v1/templates).")
    strength: float = Field(default=1.0, ge=-10.0, le=10.0)


class _Generation(Params):
    """What a template takes. Every field but ``template`` is optional here: each template
    takes the params it maps and has its own defaults (``GET /v1/templates``); one it does
    not take is refused at submission."""

    template: SafeName | None = Field(
        default=None, description="Template name; default: the best available of the type."
    )
    prompt: str | None = Field(default=None, min_length=1, max_length=MAX_PROMPT_CHARS)
    negative_prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    seed: Seed | None = Field(default=None, description="Random when not given.")
    steps: int | None = Field(default=None, ge=1, le=200)
    cfg: float | None = Field(default=None, ge=0.0, le=50.0)
    sampler: SafeName | None = None
    scheduler: SafeName | None = None
    shift: float | None = Field(default=None, ge=0.0, le=100.0)
    image: InputFile | None = None


class ImageParams(_Generation):
    width: int | None = Field(default=None, ge=64, le=4096, multiple_of=8)
    height: int | None = Field(default=None, ge=64, le=4096, multiple_of=8)
    n: int | None = Field(default=None, ge=1, le=8, description="Images in the batch.")
    checkpoint: ModelFile | None = None
    loras: list[Lora] | None = Field(default=None, max_length=MAX_LORAS)
    image2: InputFile | None = None
    image3: InputFile | None = None
    strength: float | None = Field(default=None, ge=0.0, le=10.0)


class VideoParams(_Generation):
    width: int | None = Field(default=None, ge=64, le=2048, multiple_of=16)
    height: int | None = Field(default=None, ge=64, le=2048, multiple_of=16)
    frames: int | None = Field(default=None, ge=1, le=1000)
    fps: int | None = Field(default=None, ge=1, le=60)
    end_image: InputFile | None = None
    control_video: InputFile | None = None
    split: int | None = Field(default=None, ge=1, le=200)
    loras: list[Lora] | None = Field(default=None, max_length=MAX_LORAS)


class VibeVoiceParams(Params):
    """A `tts` job on ComfyUI's VibeVoice templates: one speaker (``voice``) or up to four
    (``voices``, the text marked ``[1]: ...`` to ``[4]: ...``)."""

    template: SafeName | None = None
    input: str = Field(
        min_length=1,
        max_length=MAX_JOB_TEXT_CHARS,
        validation_alias=AliasChoices("input", "text"),
        description="Text to speak (``text`` is accepted too).",
    )
    voice: SafeName | InputFile | None = Field(
        default=None, description="A voice of the shared library, or a URL of a sample."
    )
    voices: list[SafeName | InputFile] | None = Field(default=None, min_length=1, max_length=4)
    response_format: VibeVoiceFormat = "mp3"
    model: SafeName | None = Field(default=None, description="VibeVoice variant.")
    seed: Seed | None = None
    cfg: float | None = Field(default=None, ge=0.5, le=3.5)
    steps: int | None = Field(default=None, ge=1, le=100)
    temperature: Temperature | None = None
    top_p: TopP | None = None
    speed: float | None = Field(default=None, ge=0.8, le=1.2)


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
    JobType.TTS: VibeVoiceParams,
    JobType.WORKFLOW: WorkflowParams,
}
# The params of jobs run from a published template (genstack.core.contracts.comfyui_templates),
# which the gateway checks them against; a workflow is checked against the node catalogue.
TEMPLATE_PARAMS: tuple[type[Params], ...] = (ImageParams, VideoParams, VibeVoiceParams)
