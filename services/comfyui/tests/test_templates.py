"""Templates: binding typed params into the graph, and the check against ComfyUI's node
catalogue (the `/object_info` recorded from a real ComfyUI of the pinned commit)."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from genstack.comfyui.templates import (
    ParamsError,
    Template,
    TemplateError,
    check,
    check_graph,
    evaluate,
    load_templates,
)

RECORDINGS = Path(__file__).parent / "recordings"


@pytest.fixture(scope="module")
def object_info() -> dict[str, Any]:
    info = json.loads(gzip.decompress((RECORDINGS / "object_info.json.gz").read_bytes()))
    assert isinstance(info, dict)
    return info


def with_files(
    info: dict[str, Any], class_type: str, name: str, files: list[str]
) -> dict[str, Any]:
    """The catalogue as ComfyUI answers it once ``files`` are in that loader's folder."""
    changed = copy.deepcopy(info)
    changed[class_type]["input"]["required"][name][0] = files
    return changed


@pytest.fixture(scope="module")
def templates() -> dict[str, Template]:
    return load_templates()


def test_every_template_parses_and_names_its_own_file(templates: dict[str, Template]) -> None:
    assert "txt2img" in templates
    for name, template in templates.items():
        assert template.name == name and template.graph and template.params


def test_binding_puts_params_and_defaults_in_place(templates: dict[str, Template]) -> None:
    txt2img = templates["txt2img"]
    graph = txt2img.bind({"prompt": "a cat", "width": 64, "height": 96, "n": 2, "seed": 7})
    assert graph["6"]["inputs"]["text"] == "a cat"
    assert graph["5"]["inputs"] == {"width": 64, "height": 96, "batch_size": 2}
    assert graph["3"]["inputs"]["seed"] == 7
    assert graph["3"]["inputs"]["steps"] == 25  # the template's default
    assert txt2img.graph["6"]["inputs"]["text"] == ""  # the template itself is untouched


def test_a_seed_not_given_is_random_per_job(templates: dict[str, Template]) -> None:
    seeds = {templates["txt2img"].bind({"prompt": "x"})["3"]["inputs"]["seed"] for _ in range(5)}
    assert len(seeds) > 1


def test_params_a_template_does_not_take_or_needs_are_named(templates: dict[str, Template]) -> None:
    with pytest.raises(ParamsError) as caught:
        templates["txt2img"].bind({"prompt": "x", "frames": 9})
    assert caught.value.param == "frames"
    with pytest.raises(ParamsError) as caught:
        templates["txt2img"].bind({"width": 64})
    assert caught.value.param == "prompt"


def test_loras_are_chained_after_the_checkpoint(templates: dict[str, Template]) -> None:
    graph = templates["txt2img"].bind(
        {
            "prompt": "x",
            "loras": [{"name": "a.safetensors", "strength": 0.5}, {"name": "b.safetensors"}],
        }
    )
    assert graph["lora_0"]["inputs"]["model"] == ["4", 0]
    assert graph["lora_0"]["inputs"]["clip"] == ["4", 1]
    assert graph["lora_0"]["inputs"]["strength_model"] == 0.5
    assert graph["lora_1"]["inputs"]["model"] == ["lora_0", 0]
    # Every consumer of the checkpoint's model and clip now takes the last lora's.
    assert graph["3"]["inputs"]["model"] == ["lora_1", 0]
    assert graph["6"]["inputs"]["clip"] == graph["7"]["inputs"]["clip"] == ["lora_1", 1]
    assert graph["8"]["inputs"]["vae"] == ["4", 2]  # the VAE is not a lora's


def test_an_input_file_param_adds_its_loader() -> None:
    template = Template.parse(
        "i2v",
        {
            "type": "video",
            "params": {"image": {"load": "LoadImage", "to": "1.start_image"}},
            "graph": {"1": {"class_type": "Wan22ImageToVideoLatent", "inputs": {}}},
        },
    )
    assert "image_load" not in template.bind({})  # optional: no loader without an image
    graph = template.bind({"image": "https://example.com/a.png"})
    assert graph["image_load"] == {
        "class_type": "LoadImage",
        "inputs": {"image": "https://example.com/a.png"},
    }
    assert graph["1"]["inputs"]["start_image"] == ["image_load", 0]


def test_expression_defaults_follow_other_params() -> None:
    template = Template.parse(
        "two_stage",
        {
            "type": "video",
            "params": {
                "steps": {"to": ["1.steps", "2.steps"], "default": 20},
                "split": {"to": ["1.end_at_step", "2.start_at_step"], "default": "= steps // 2"},
            },
            "graph": {
                "1": {"class_type": "A", "inputs": {}},
                "2": {"class_type": "B", "inputs": {}},
            },
        },
    )
    graph = template.bind({"steps": 8})
    assert graph["1"]["inputs"] == {"steps": 8, "end_at_step": 4}
    assert graph["2"]["inputs"] == {"steps": 8, "start_at_step": 4}
    assert template.bind({"steps": 8, "split": 6})["1"]["inputs"]["end_at_step"] == 6
    # The defaults a check publishes hold the expression as written; binding still computes it.
    graph = template.bind({"steps": 10}, defaults=template.defaults())
    assert graph["2"]["inputs"]["start_at_step"] == 5


def test_expressions_are_arithmetic_only() -> None:
    assert evaluate("frames * 4 + 1", {"frames": 5}) == 21
    for bad in ("__import__('os')", "steps.real", "[1][0]", "a if b else c"):
        with pytest.raises(TemplateError):
            evaluate(bad, {"steps": 2})


def test_a_malformed_template_is_refused_at_load() -> None:
    with pytest.raises(TemplateError, match="unknown node"):
        Template.parse(
            "bad",
            {
                "type": "image",
                "params": {"p": {"to": "9.x"}},
                "graph": {"1": {"class_type": "A", "inputs": {}}},
            },
        )
    with pytest.raises(TemplateError, match="unknown keys"):
        Template.parse(
            "bad",
            {
                "type": "image",
                "params": {"p": {"to": "1.x", "deafult": 1}},
                "graph": {"1": {"class_type": "A", "inputs": {}}},
            },
        )


def test_a_template_without_its_model_file_is_unavailable_naming_the_file(
    templates: dict[str, Template], object_info: dict[str, Any]
) -> None:
    result = check(templates["txt2img"], object_info)  # no checkpoint in this ComfyUI
    assert not result.available
    [problem] = result.problems
    assert problem.folder == "checkpoints"
    assert problem.file == "realismIllustriousByStableYogi_v50FP16.safetensors"
    assert "not present" in (result.reason or "")


def test_with_its_model_file_present_it_is_available_and_lists_the_choices(
    templates: dict[str, Template], object_info: dict[str, Any]
) -> None:
    files = ["realismIllustriousByStableYogi_v50FP16.safetensors", "sd15.safetensors"]
    info = with_files(object_info, "CheckpointLoaderSimple", "ckpt_name", files)
    info = with_files(info, "LoraLoader", "lora_name", ["civitai_123.safetensors"])
    result = check(templates["txt2img"], info)
    assert result.available, result.reason
    assert result.choices["checkpoint"] == files
    assert result.choices["loras"] == ["civitai_123.safetensors"]


def test_the_check_finds_what_comfyui_would_refuse(object_info: dict[str, Any]) -> None:
    graph = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "NoSuchNode", "inputs": {}},
        "3": {
            "class_type": "ImageScale",
            "inputs": {"image": ["9", 0], "upscale_method": "bogus", "width": 8, "height": 8},
        },
    }
    messages = [p.message for p in check_graph(graph, object_info)]
    assert any("node 1 (EmptyImage): input 'width': 0 is below 1" in m for m in messages)
    assert any("ComfyUI has no node NoSuchNode" in m for m in messages)
    assert any("node 3 (ImageScale): input 'image' links to missing node 9" in m for m in messages)
    assert any("'upscale_method': 'bogus' is not one of" in m for m in messages)
    assert any("input 'crop' is missing" in m for m in messages)


def test_a_list_of_files_feeds_the_targets_in_order() -> None:
    template = Template.parse(
        "speakers",
        {
            "type": "tts",
            "params": {
                "voices": {"load": "LoadAudio", "to": ["1.speaker1_voice", "1.speaker2_voice"]}
            },
            "graph": {"1": {"class_type": "VibeVoiceMultipleSpeakersNode", "inputs": {}}},
        },
    )
    graph = template.bind({"voices": ["a.wav", "b.wav"]})
    assert graph["1"]["inputs"] == {
        "speaker1_voice": ["voices_load", 0],
        "speaker2_voice": ["voices_load_1", 0],
    }
    assert graph["voices_load_1"]["inputs"] == {"audio": "b.wav"}
    with pytest.raises(ParamsError, match="at most 2"):
        template.bind({"voices": ["a.wav", "b.wav", "c.wav"]})


def test_a_loaders_other_inputs_are_values_or_expressions_over_the_params() -> None:
    template = Template.parse(
        "v2v",
        {
            "type": "video",
            "params": {
                "frames": {"to": "1.length", "default": 81},
                "control_video": {
                    "load": "VHS_LoadVideo",
                    "to": "1.control_video",
                    "loader_inputs": {"frame_load_cap": "= frames", "custom_width": 0},
                },
            },
            "graph": {"1": {"class_type": "WanVaceToVideo", "inputs": {}}},
        },
    )
    graph = template.bind({"control_video": "pose.mp4", "frames": 33})
    assert graph["control_video_load"]["inputs"] == {
        "video": "pose.mp4",
        "frame_load_cap": 33,
        "custom_width": 0,
    }
    assert "control_video_load" not in template.bind({})
    with pytest.raises(TemplateError, match="without `load`"):
        Template.parse(
            "bad",
            {
                "type": "video",
                "params": {"p": {"to": "1.x", "loader_inputs": {"a": 1}}},
                "graph": {"1": {"class_type": "A", "inputs": {}}},
            },
        )


def test_the_check_refuses_text_where_comfyui_wants_a_number(object_info: dict[str, Any]) -> None:
    graph = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": "= steps // 2", "height": "8", "batch_size": 1, "color": 0},
        }
    }
    messages = [p.message for p in check_graph(graph, object_info)]
    assert messages == ["node 1 (EmptyImage): input 'width': '= steps // 2' is not a number"]


def test_what_is_published_narrows_params_by_comfyui_and_lists_the_files(
    templates: dict[str, Template], object_info: dict[str, Any]
) -> None:
    from genstack.comfyui.templates import published
    from genstack.core.contracts.comfyui_templates import template_problems
    from genstack.core.jobs import JobType

    info = with_files(object_info, "CheckpointLoaderSimple", "ckpt_name", ["sd15.safetensors"])
    info = with_files(info, "LoraLoader", "lora_name", ["civitai_1.safetensors"])
    entry = published(check(templates["txt2img"], info), info)
    assert entry.available and entry.type == JobType.IMAGE
    assert entry.params["checkpoint"].default == "sd15.safetensors"  # the only one present
    assert entry.params["checkpoint"].schema_["enum"] == ["sd15.safetensors"]
    assert "dpmpp_2m" in entry.params["sampler"].schema_["enum"]
    assert entry.params["width"].schema_["minimum"] == 64  # the contract's, not ComfyUI's 16
    assert entry.params["width"].schema_["x-step"] == {"from": 16, "step": 8}
    assert entry.params["prompt"].required
    listing = {"txt2img": entry}

    def problems(params: dict[str, Any]) -> list[tuple[str, str]]:
        return [(p.param, p.code) for p in template_problems(JobType.IMAGE, params, listing)]

    assert problems({"prompt": "a cat", "width": 64, "checkpoint": "sd15.safetensors"}) == []
    assert problems({"prompt": "a cat", "checkpoint": "other.safetensors"}) == [
        ("params.checkpoint", "invalid_value")
    ]
    assert problems({"prompt": "a cat", "frames": 9}) == [("params.frames", "unsupported_param")]
    assert problems({"prompt": "a cat", "loras": [{"name": "nope.safetensors"}]}) == [
        ("params.loras", "invalid_value")
    ]
    assert problems({"width": 64}) == [("params.prompt", "missing_param")]
    assert problems({"template": "nope", "prompt": "x"}) == [
        ("params.template", "unknown_template")
    ]
    assert template_problems(JobType.VIDEO, {"prompt": "x"}, listing)[0].code == "no_template"
