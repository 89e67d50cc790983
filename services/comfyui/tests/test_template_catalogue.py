"""Every shipped template against the node catalogue of a real ComfyUI 0.3.64 with the pinned
custom nodes (recorded `/object_info`) and against the model files provisioning puts in
MODELS_DIR (the comfyui catalogue's `dest` names): available when its provisioning variables
are on, unavailable naming exactly the files it lacks when they are off, its bound graph one
ComfyUI accepts (values in range and on the input's step), and the default template of each
job type following what is provisioned."""

from __future__ import annotations

import copy
import gzip
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from genstack.comfyui.templates import (
    LOADER_INPUT,
    MODEL_INPUTS,
    Availability,
    Graph,
    Template,
    check,
    check_graph,
    load_templates,
    published,
)
from genstack.core.contracts.comfyui_templates import template_problems
from genstack.core.jobs import JobType
from genstack.provision import load_catalog
from genstack.provision.gpu import resolve_profile
from genstack.provision.plan import resolve_variables, select_entries

RECORDINGS = Path(__file__).parent / "recordings"

# The params the job contract names, by job type: a template takes a subset of its type's.
PARAM_NAMES: dict[JobType, set[str]] = {
    JobType.IMAGE: {
        "prompt",
        "negative_prompt",
        "width",
        "height",
        "n",
        "seed",
        "steps",
        "cfg",
        "sampler",
        "scheduler",
        "checkpoint",
        "loras",
        "image",
        "image2",
        "image3",
        "strength",
        "shift",
    },
    JobType.VIDEO: {
        "prompt",
        "negative_prompt",
        "width",
        "height",
        "frames",
        "fps",
        "seed",
        "steps",
        "cfg",
        "sampler",
        "scheduler",
        "image",
        "end_image",
        "control_video",
        "shift",
        "split",
        "loras",
    },
    JobType.TTS: {
        "text",
        "voice",
        "voices",
        "seed",
        "cfg",
        "steps",
        "temperature",
        "top_p",
        "speed",
        "model",
    },
}

# The provisioning variables with every `auto` pinned and every model off, so a scenario
# turns on only what it names (and no GPU is consulted).
BASE_ENV = {
    "ENABLE_VIBEVOICE": "false",
    "VIBEVOICE_MODEL": "Large",
    "ENABLE_CONTROLNET": "false",
    "WAN_720P": "false",
    "WAN_480P": "false",
    "QWEN_EDIT_MODEL": "Q4_K_M",
    "GPU_TIER": "datacenter",
}
# An SD 1.5 checkpoint a user added (the catalogue provisions none; the ControlNets need one).
SD15 = "checkpoints/v1-5-pruned-emaonly-fp16.safetensors"


@dataclass(frozen=True)
class Scenario:
    env: Mapping[str, str]
    added: tuple[str, ...] = ()  # files a user put in MODELS_DIR besides the provisioned


# The provisioning that makes each template runnable.
SCENARIOS: dict[str, Scenario] = {
    "txt2img": Scenario({"ENABLE_ILLUSTRIOUS": "true"}),
    "zimage-turbo": Scenario({"ENABLE_ZIMAGE": "true"}),
    "controlnet-canny": Scenario(
        {"ENABLE_CONTROLNET": "true", "CONTROLNET_MODELS": "canny"}, (SD15,)
    ),
    "controlnet-depth": Scenario(
        {"ENABLE_CONTROLNET": "true", "CONTROLNET_MODELS": "depth"}, (SD15,)
    ),
    "controlnet-openpose": Scenario(
        {"ENABLE_CONTROLNET": "true", "CONTROLNET_MODELS": "openpose"}, (SD15,)
    ),
    "qwen-edit": Scenario({"ENABLE_QWEN_EDIT": "true", "QWEN_EDIT_MODEL": "Q4_K_M"}),
    "qwen-edit-full": Scenario({"ENABLE_QWEN_EDIT": "true", "QWEN_EDIT_MODEL": "full"}),
    "wan22-5b": Scenario({"ENABLE_WAN22_5B": "true"}),
    "wan21-t2v-480p": Scenario({"WAN_480P": "true"}),
    "wan21-t2v-720p": Scenario({"WAN_720P": "true"}),
    "wan21-i2v-720p": Scenario({"WAN_720P": "true", "ENABLE_I2V": "true"}),
    "wan22-i2v-14b": Scenario({"ENABLE_WAN22_DISTILL": "true"}),
    "turbo-wan22-i2v": Scenario({"ENABLE_WAN22_DISTILL": "true"}),
    "wan21-vace": Scenario({"ENABLE_VACE": "true"}),
    "wan22-fun-inp": Scenario({"ENABLE_FUN_INP": "true"}),
    "vibevoice": Scenario({"ENABLE_VIBEVOICE": "true"}),
    "vibevoice-multi": Scenario({"ENABLE_VIBEVOICE": "true"}),
}

# What ComfyUI's folder listing keeps for the loaders (folder_paths.supported_pt_extensions;
# ComfyUI-GGUF's loaders list .gguf files only).
MODEL_EXTENSIONS = (".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft")
GGUF_LOADERS = {"UnetLoaderGGUF", "CLIPLoaderGGUF"}


# -- the catalogue as a provisioned ComfyUI lists it --------------------------------------


def provisioned(scenario: Scenario) -> list[str]:
    """The files (paths under MODELS_DIR) the comfyui catalogue selects for ``scenario``,
    and those the user added."""
    manifest = load_catalog("comfyui")
    profile = resolve_profile({}, assume_vram_gb=80)
    values = resolve_variables(manifest, {**BASE_ENV, **scenario.env}, profile)
    return [e.dest for e in select_entries(manifest, values)] + list(scenario.added)


def _split(dest: str) -> tuple[str, str]:
    folder, _, name = dest.rstrip("/").partition("/")
    return folder, name


def _listing(class_type: str, recorded: list[Any], dests: Sequence[str]) -> list[Any]:
    """What ``class_type`` offers once ``dests`` are in its folder: VibeVoice lists model
    folders by name (else its "No models found"), TurboWanVAELoader the files named *vae*
    (else a default it does not have), the others their files, before any fixed choice
    (VAELoader's pixel_space)."""
    if class_type.startswith("VibeVoice"):
        folders = [n for n in (_split(d)[1] for d in dests if d.endswith("/")) if n != "tokenizer"]
        return sorted(folders) or recorded
    names = [_split(d)[1] for d in dests if not d.endswith("/")]
    if class_type in GGUF_LOADERS:
        files = [n for n in names if n.endswith(".gguf")]
    else:
        files = [n for n in names if n.endswith(MODEL_EXTENSIONS)]
    if class_type == "TurboWanVAELoader":
        return sorted(n for n in files if "vae" in n.lower()) or recorded
    return sorted(files) + recorded


def with_model_files(info: Mapping[str, Any], dests: Sequence[str]) -> dict[str, Any]:
    """The recorded catalogue as ComfyUI answers it with ``dests`` in MODELS_DIR: every
    model-file combo lists the files of its folder."""
    changed = copy.deepcopy(dict(info))
    for (class_type, name), folder in MODEL_INPUTS.items():
        spec = changed.get(class_type, {}).get("input", {}).get("required", {}).get(name)
        if spec is None:
            continue
        in_folder = [d for d in dests if _split(d)[0] == folder]
        spec[0] = _listing(class_type, list(spec[0]), in_folder)
    return changed


def with_input_files(info: dict[str, Any], files: Sequence[str]) -> dict[str, Any]:
    """``info`` with ``files`` in ComfyUI's input folder (what the worker uploads)."""
    for class_type, name in LOADER_INPUT.items():
        spec = info.get(class_type, {}).get("input", {}).get("required", {}).get(name)
        if spec is not None:
            spec[0] = list(spec[0]) + list(files)
    return info


def off_grid(graph: Graph, info: Mapping[str, Any]) -> list[str]:
    """INT inputs whose value is not ``min + k * step`` (Wan lengths 4k+1, widths in steps
    of 16 or 32): ComfyUI's UI never makes them, and the models break on them."""
    found = []
    for node_id, node in graph.items():
        spec_inputs = info[node["class_type"]]["input"]
        specs = {**(spec_inputs.get("required") or {}), **(spec_inputs.get("optional") or {})}
        for name, value in node["inputs"].items():
            spec = specs.get(name)
            if not (isinstance(spec, list) and spec[0] == "INT" and len(spec) > 1):
                continue
            if isinstance(value, list):  # a link
                continue
            low, step = spec[1].get("min", 0), spec[1].get("step", 1)
            if step > 1 and (value - low) % step:
                found.append(f"{node_id}.{name} = {value}: not {low} + k * {step}")
    return found


def default_template(results: Mapping[str, Availability], job_type: JobType) -> str | None:
    """The default template of a job type: the available one with the highest rank, ties by
    name; a negative rank is never the default (templates that need an input)."""
    candidates = [
        r.template
        for r in results.values()
        if r.available and r.template.type == job_type and r.template.rank >= 0
    ]
    if not candidates:
        return None
    return sorted(candidates, key=lambda t: (-t.rank, t.name))[0].name


@pytest.fixture(scope="module")
def object_info() -> dict[str, Any]:
    info = json.loads(gzip.decompress((RECORDINGS / "object_info.json.gz").read_bytes()))
    assert isinstance(info, dict)
    return info


@pytest.fixture(scope="module")
def templates() -> dict[str, Template]:
    return load_templates()


# -- the templates themselves ------------------------------------------------------------


def test_every_template_has_a_scenario(templates: dict[str, Template]) -> None:
    assert set(templates) == set(SCENARIOS)


def test_every_template_says_what_it_is_and_takes_only_its_types_params(
    templates: dict[str, Template],
) -> None:
    for name, template in templates.items():
        assert template.title and template.source, name
        unknown = set(template.params) - PARAM_NAMES[template.type]
        assert not unknown, f"{name}: params {unknown} are not in the job contract"


def test_a_template_that_needs_an_input_file_is_never_a_types_default(
    templates: dict[str, Template],
) -> None:
    for name, template in templates.items():
        needs_input = any(s.required and s.load for s in template.params.values())
        if needs_input:
            assert template.rank < 0, f"{name} needs an input but could be the default"


# -- (a) available with what provisioning puts there ---------------------------------------


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_with_its_provisioned_files_it_is_available(
    name: str, templates: dict[str, Template], object_info: dict[str, Any]
) -> None:
    info = with_model_files(object_info, provisioned(SCENARIOS[name]))
    result = check(templates[name], info)
    assert result.available, result.reason


@pytest.mark.parametrize("variant", ["Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"])
def test_the_gguf_qwen_edit_follows_the_quantization_provisioned(
    variant: str, templates: dict[str, Template], object_info: dict[str, Any]
) -> None:
    scenario = Scenario({"ENABLE_QWEN_EDIT": "true", "QWEN_EDIT_MODEL": variant})
    info = with_model_files(object_info, provisioned(scenario))
    result = check(templates["qwen-edit"], info)
    assert result.available, result.reason
    assert result.defaults["checkpoint"] == f"qwen-image-edit-2511-{variant}.gguf"
    assert result.choices["checkpoint"] == [f"qwen-image-edit-2511-{variant}.gguf"]
    # The bf16 template needs the full model, which this variant does not bring.
    assert not check(templates["qwen-edit-full"], info).available


def test_the_full_qwen_edit_is_not_the_gguf_ones(
    templates: dict[str, Template], object_info: dict[str, Any]
) -> None:
    info = with_model_files(object_info, provisioned(SCENARIOS["qwen-edit-full"]))
    result = check(templates["qwen-edit"], info)
    assert not result.available
    assert "none of the model files qwen-image-edit-2511-Q8_0.gguf" in (result.reason or "")


@pytest.mark.parametrize("variant", ["1.5B", "Large", "Large-Q8"])
def test_vibevoice_follows_the_variant_provisioned(
    variant: str, templates: dict[str, Template], object_info: dict[str, Any]
) -> None:
    scenario = Scenario({"ENABLE_VIBEVOICE": "true", "VIBEVOICE_MODEL": variant})
    info = with_model_files(object_info, provisioned(scenario))
    for name in ("vibevoice", "vibevoice-multi"):
        result = check(templates[name], info)
        assert result.available, result.reason
        assert result.defaults["model"] == f"VibeVoice-{variant}"


def test_loras_and_checkpoints_a_user_added_are_choices(
    templates: dict[str, Template], object_info: dict[str, Any]
) -> None:
    scenario = Scenario(
        {"ENABLE_CONTROLNET": "true", "CONTROLNET_MODELS": "canny", "CIVITAI_LORAS": "123"},
        (SD15, "checkpoints/dreamshaper_8.safetensors"),
    )
    info = with_model_files(object_info, provisioned(scenario))
    result = check(templates["controlnet-canny"], info)
    assert result.available, result.reason
    assert result.defaults["checkpoint"] == "v1-5-pruned-emaonly-fp16.safetensors"
    assert "dreamshaper_8.safetensors" in result.choices["checkpoint"]
    assert result.choices["loras"] == ["civitai_123.safetensors"]
    # Without the preferred file, any checkpoint will do (the user names the right one).
    scenario = Scenario(scenario.env, ("checkpoints/dreamshaper_8.safetensors",))
    info = with_model_files(object_info, provisioned(scenario))
    result = check(templates["controlnet-canny"], info)
    assert result.available and result.defaults["checkpoint"] == "dreamshaper_8.safetensors"


# -- (b) unavailable, naming the missing files, without them -------------------------------


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_without_model_files_it_names_exactly_the_files_it_needs(
    name: str, templates: dict[str, Template], object_info: dict[str, Any]
) -> None:
    template = templates[name]
    result = check(template, object_info)  # the recording: no model files at all
    assert not result.available
    assert all(p.folder and p.file for p in result.problems), result.reason
    preferred = {f for spec in template.params.values() for f in spec.prefer}

    def norm(folder: str, file: str) -> tuple[str, str]:
        # A preferred file stands for whichever of the preferred ones is present.
        return (folder, "<preferred>" if file in preferred else file)

    named = {norm(str(p.folder), str(p.file)) for p in result.problems}
    # The files of its scenario without which it cannot run: exactly those it named.
    files = provisioned(SCENARIOS[name])
    needed = set()
    for dest in files:
        rest = [d for d in files if d != dest]
        if not check(template, with_model_files(object_info, rest)).available:
            needed.add(norm(*_split(dest)))
    assert named == needed


# -- (c) a bound graph is one ComfyUI accepts ----------------------------------------------


def _typical(template: Template) -> dict[str, Any]:
    """Params a job might send: a prompt, a smaller size and length, every input file."""
    wanted: dict[str, Any] = {
        "prompt": "a red fox trotting through fresh snow, morning light",
        "text": "[1]: Hello there.\n[2]: Hi! Nice to meet you.",
        "seed": 123456789,
        "width": 832,
        "height": 480,
        "frames": 49,  # 4k+1 and 8k+1
        "image": "in/start.png",
        "image2": "in/ref2.png",
        "image3": "in/ref3.png",
        "end_image": "in/end.png",
        "control_video": "in/pose.mp4",
        "voice": "in/voice.wav",
        "voices": ["in/a.wav", "in/b.wav", "in/c.wav", "in/d.wav"],
    }
    return {k: v for k, v in wanted.items() if k in template.params}


INPUT_FILES = ["in/start.png", "in/ref2.png", "in/ref3.png", "in/end.png", "in/pose.mp4"]
INPUT_FILES += ["in/voice.wav", "in/a.wav", "in/b.wav", "in/c.wav", "in/d.wav"]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_bound_with_typical_params_comfyui_accepts_the_graph(
    name: str, templates: dict[str, Template], object_info: dict[str, Any]
) -> None:
    template = templates[name]
    info = with_model_files(object_info, provisioned(SCENARIOS[name]))
    result = check(template, info)
    info = with_input_files(info, INPUT_FILES)
    for params in (
        _typical(template),  # every input given
        {k: v for k, v in _typical(template).items() if template.params[k].required},
    ):
        graph = template.bind(params, defaults=result.defaults)
        assert check_graph(graph, info) == []
        assert off_grid(graph, info) == []


def test_binding_puts_the_inputs_where_the_models_take_them(
    templates: dict[str, Template],
) -> None:
    i2v = templates["wan22-5b"].bind({"prompt": "x", "image": "in/a.png"})
    assert i2v["55"]["inputs"]["start_image"] == ["image_load", 0]
    assert "start_image" not in templates["wan22-5b"].bind({"prompt": "x"})["55"]["inputs"]
    edit = templates["qwen-edit"].bind({"prompt": "x", "image": "a.png", "image2": "b.png"})
    assert edit["93"]["inputs"]["image"] == ["image_load", 0]
    assert edit["110"]["inputs"]["image2"] == edit["111"]["inputs"]["image2"] == ["image2_load", 0]
    assert "image3" not in edit["111"]["inputs"]
    vace = templates["wan21-vace"].bind({"prompt": "x", "control_video": "v.mp4", "frames": 49})
    loader = vace["control_video_load"]
    assert loader["class_type"] == "VHS_LoadVideo"
    assert loader["inputs"]["video"] == "v.mp4"
    assert loader["inputs"]["frame_load_cap"] == 49 and loader["inputs"]["force_rate"] == 16
    assert vace["49"]["inputs"]["control_video"] == ["control_video_load", 0]
    speakers = templates["vibevoice-multi"].bind({"text": "x", "voices": ["a.wav", "b.wav"]})
    assert speakers["1"]["inputs"]["speaker2_voice"] == ["voices_load_1", 0]
    assert "speaker3_voice" not in speakers["1"]["inputs"]


def test_two_stage_templates_hand_over_at_the_split(templates: dict[str, Template]) -> None:
    for name in ("wan22-i2v-14b", "wan22-fun-inp"):
        graph = templates[name].bind({"prompt": "x", "image": "a.png", "steps": 8})
        high, low = graph["86"]["inputs"], graph["85"]["inputs"]
        assert high["steps"] == low["steps"] == 8
        assert high["end_at_step"] == low["start_at_step"] == 4  # steps // 2
        assert (high["add_noise"], low["add_noise"]) == ("enable", "disable")
        assert low["latent_image"] == ["86", 0]
        graph = templates[name].bind({"prompt": "x", "image": "a.png", "split": 6})
        assert graph["86"]["inputs"]["end_at_step"] == graph["85"]["inputs"]["start_at_step"] == 6


def test_vibevoice_samples_only_when_asked_to(templates: dict[str, Template]) -> None:
    # temperature/top_p mean nothing in the node's deterministic mode: giving one turns
    # sampling on (ComfyUI reads the number as true for the BOOLEAN input).
    plain = templates["vibevoice"].bind({"text": "x"})["1"]["inputs"]
    assert plain["use_sampling"] is False and "temperature" not in plain
    warm = templates["vibevoice"].bind({"text": "x", "temperature": 0.7})["1"]["inputs"]
    assert warm["temperature"] == 0.7 and warm["use_sampling"]


# -- (d) the default template of each type -------------------------------------------------


def _availability(
    templates: dict[str, Template], object_info: dict[str, Any], scenario: Scenario
) -> dict[str, Availability]:
    info = with_model_files(object_info, provisioned(scenario))
    return {name: check(template, info) for name, template in templates.items()}


@pytest.mark.parametrize(
    ("env", "added", "job_type", "expected"),
    [
        ({"WAN_480P": "true"}, (), JobType.VIDEO, "wan21-t2v-480p"),
        ({"WAN_720P": "true"}, (), JobType.VIDEO, "wan21-t2v-720p"),
        ({"WAN_720P": "true", "WAN_480P": "true"}, (), JobType.VIDEO, "wan21-t2v-720p"),
        ({"ENABLE_WAN22_5B": "true", "WAN_720P": "true"}, (), JobType.VIDEO, "wan22-5b"),
        ({"ENABLE_WAN22_5B": "true", "WAN_480P": "true"}, (), JobType.VIDEO, "wan22-5b"),
        (
            {
                "WAN_720P": "true",
                "ENABLE_I2V": "true",
                "ENABLE_VACE": "true",
                "ENABLE_FUN_INP": "true",
                "ENABLE_WAN22_DISTILL": "true",
            },
            (),
            JobType.VIDEO,
            "wan21-t2v-720p",
        ),
        ({"ENABLE_WAN22_DISTILL": "true"}, (), JobType.VIDEO, None),  # image to video only
        ({"ENABLE_ILLUSTRIOUS": "true"}, (), JobType.IMAGE, "txt2img"),
        ({"ENABLE_ZIMAGE": "true"}, (), JobType.IMAGE, "zimage-turbo"),
        ({"ENABLE_ZIMAGE": "true", "ENABLE_ILLUSTRIOUS": "true"}, (), JobType.IMAGE, "txt2img"),
        ({"ENABLE_QWEN_EDIT": "true", "ENABLE_CONTROLNET": "true"}, (), JobType.IMAGE, None),
        ({"ENABLE_CONTROLNET": "true"}, (SD15,), JobType.IMAGE, "txt2img"),
        ({"ENABLE_VIBEVOICE": "true"}, (), JobType.TTS, "vibevoice"),
        ({}, (), JobType.TTS, None),
    ],
)
def test_the_default_template_follows_what_is_provisioned(
    env: dict[str, str],
    added: tuple[str, ...],
    job_type: JobType,
    expected: str | None,
    templates: dict[str, Template],
    object_info: dict[str, Any],
) -> None:
    results = _availability(templates, object_info, Scenario(env, added))
    assert default_template(results, job_type) == expected


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_gateway_accepts_typical_params_for_what_the_worker_publishes(
    name: str, templates: dict[str, Template], object_info: dict[str, Any]
) -> None:
    template = templates[name]
    info = with_model_files(object_info, provisioned(SCENARIOS[name]))
    entry = published(check(template, info), info)
    assert entry.available, entry.reason
    params = {"template": name, **_typical(template)}
    assert template_problems(template.type, params, {name: entry}) == []
    # Every default it publishes is one the gateway would accept back.
    defaults = {k: p.default for k, p in entry.params.items() if p.default is not None}
    assert template_problems(template.type, {**params, **defaults}, {name: entry}) == []
