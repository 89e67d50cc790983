"""Typed jobs in the worker: the template registry (refreshed from the recorded
``/object_info``), binding a job's params, a speech job's save node and its voices."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from genstack.comfyui.inputs import InputError, VoiceFiles
from genstack.comfyui.template_registry import TemplateRegistry
from genstack.comfyui.templates import Template, load_templates
from genstack.comfyui.workflow import save_audio_as, stored_inputs
from genstack.core.contracts.comfyui_templates import PublishedTemplates
from genstack.core.job_runner import JobFailedError
from genstack.core.jobs import JobType

RECORDINGS = Path(__file__).parent / "recordings"
SPEECH = Template.parse(
    "speech",
    {
        "type": "tts",
        "params": {
            "text": {"to": "1.text", "required": True},
            "voice": {"load": "LoadAudio", "to": "1.voice_to_clone"},
        },
        "graph": {
            "1": {"class_type": "VibeVoiceSingleSpeakerNode", "inputs": {"text": ""}},
            "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "a"}},
        },
    },
)


@pytest.fixture(scope="module")
def object_info() -> dict[str, Any]:
    info = json.loads(gzip.decompress((RECORDINGS / "object_info.json.gz").read_bytes()))
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = ["sd15.safetensors"]
    assert isinstance(info, dict)
    return info


def test_the_registry_marks_what_runs_and_binds_jobs_with_this_comfyuis_defaults(
    object_info: dict[str, Any],
) -> None:
    registry = TemplateRegistry(load_templates())
    with pytest.raises(JobFailedError) as caught:
        registry.graph_for(JobType.IMAGE, {"prompt": "x"})
    assert caught.value.code == "templates_unknown" and caught.value.retryable
    listing = registry.refresh(object_info)
    assert listing["txt2img"].available
    # What the publisher writes parses as the contract says.
    PublishedTemplates.model_validate_json(
        PublishedTemplates(published_at=1.0, stale_after_s=60, templates=listing).model_dump_json(
            by_alias=True
        )
    )
    name, graph = registry.graph_for(JobType.IMAGE, {"prompt": "a cat", "width": 64, "seed": 3})
    assert name == "txt2img"  # the default image template here
    assert graph["4"]["inputs"]["ckpt_name"] == "sd15.safetensors"  # the one file present
    assert graph["5"]["inputs"]["width"] == 64 and graph["3"]["inputs"]["seed"] == 3


@pytest.mark.parametrize(
    ("job_type", "params", "code"),
    [
        (JobType.VIDEO, {"prompt": "x", "template": "txt2img"}, "unknown_template"),
        (JobType.IMAGE, {"prompt": "x", "template": "nope"}, "unknown_template"),
        (JobType.IMAGE, {"prompt": "x", "frames": 9}, "invalid_params"),
    ],
)
def test_what_the_registry_refuses_is_named(
    object_info: dict[str, Any], job_type: JobType, params: dict[str, Any], code: str
) -> None:
    registry = TemplateRegistry(load_templates())
    registry.refresh(object_info)
    with pytest.raises(JobFailedError) as caught:
        registry.graph_for(job_type, params)
    assert caught.value.code == code


def test_an_unavailable_template_says_why(object_info: dict[str, Any]) -> None:
    info = copy.deepcopy(object_info)
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = []
    registry = TemplateRegistry(load_templates())
    assert not registry.refresh(info)["txt2img"].available
    with pytest.raises(JobFailedError) as caught:
        registry.graph_for(JobType.IMAGE, {"prompt": "x", "template": "txt2img"})
    assert caught.value.code == "template_unavailable"
    assert "not present" in caught.value.message


def test_a_broken_template_is_unavailable_not_fatal(object_info: dict[str, Any]) -> None:
    broken = Template.parse(
        "broken",
        {
            "type": "image",
            "params": {"p": {"to": "1.x", "default": "= nope + 1"}},
            "graph": {"1": {"class_type": "EmptyImage", "inputs": {}}},
        },
    )
    listing = TemplateRegistry({"broken": broken}).refresh(object_info)
    assert not listing["broken"].available
    assert "could not be checked" in (listing["broken"].reason or "")


def test_a_speech_job_saves_the_format_asked_for() -> None:
    graph = SPEECH.bind({"text": "hello"})
    save_audio_as(graph, "mp3")
    assert graph["2"] == {
        "class_type": "SaveAudioMP3",
        "inputs": {"audio": ["1", 0], "filename_prefix": "a", "quality": "V0"},
    }
    save_audio_as(graph, "flac")
    assert graph["2"]["class_type"] == "SaveAudio" and "quality" not in graph["2"]["inputs"]


def test_voices_come_from_the_library_by_name_and_never_from_outside_it(tmp_path: Path) -> None:
    (tmp_path / "alice.wav").write_bytes(b"RIFF....WAVE")
    (tmp_path.parent / "secret.wav").write_bytes(b"no")
    voices = VoiceFiles(tmp_path)
    assert voices.read("alice").data == b"RIFF....WAVE"
    for bad in ("../secret", "bob", ".hidden"):
        with pytest.raises(InputError):
            voices.read(bad)
    graph = SPEECH.bind({"text": "hi", "voice": "alice"})
    [wanted] = stored_inputs(graph)
    assert (wanted.url, wanted.kind, wanted.stored) == ("alice", "audio", True)


def test_tiny_params_meet_each_templates_minimum_and_step() -> None:
    from genstack.comfyui.warmup import tiny_params
    from genstack.core.contracts.comfyui_templates import PublishedTemplate, TemplateParam

    template = PublishedTemplate(
        name="wan",
        type=JobType.VIDEO,
        available=True,
        params={
            "prompt": TemplateParam(required=True),
            "width": TemplateParam(schema={"minimum": 32, "x-step": {"from": 32, "step": 32}}),
            "frames": TemplateParam(schema={"minimum": 1, "x-step": {"from": 1, "step": 4}}),
            "steps": TemplateParam(schema={"minimum": 1}),
        },
    )
    assert tiny_params(template) == {"prompt": "warm-up", "width": 64, "frames": 1, "steps": 1}


def test_tiny_png_is_a_png_of_the_size() -> None:
    import struct
    import zlib

    from genstack.comfyui.warmup import tiny_png

    data = tiny_png(8)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (8, 8)
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    assert len(zlib.decompress(data[idat + 4 : idat + 4 + length])) == 8 * (1 + 3 * 8)


def test_warmup_runs_each_available_template_and_leaves_no_file(replay: Any) -> None:
    from genstack.comfyui.client import ComfyUIClient
    from genstack.comfyui.warmup import WARMUP_FOLDER, Warmup

    # A model-free template whose graph is the recorded image_batch one.
    batch = Template.parse(
        "batch",
        {
            "type": "image",
            "params": {"color": {"to": "1.color", "default": 3368652}},
            "graph": {
                "1": {
                    "class_type": "EmptyImage",
                    "inputs": {"width": 64, "height": 64, "batch_size": 2, "color": 0},
                },
                "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
                "3": {
                    "class_type": "SaveImage",
                    "inputs": {"images": ["2", 0], "filename_prefix": "img"},
                },
            },
        },
    )
    client = ComfyUIClient(replay.url, poll_s=0.2, grace_s=1)
    warmup = Warmup(
        client, TemplateRegistry({"batch": batch}), replay.output_dir, enabled=True, timeout_s=30
    )
    assert warmup.readiness() != "ok"
    assert warmup.run() == {"batch": "ok"}
    assert warmup.readiness() == "ok"
    assert len(replay.submitted) == 1
    assert replay.submitted[0]["prompt"]["3"]["inputs"]["filename_prefix"].startswith(WARMUP_FOLDER)
    assert not (replay.output_dir / WARMUP_FOLDER).exists()
