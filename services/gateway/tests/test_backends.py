"""Backends are configuration plus a params module."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from genstack.core.jobs import JobType
from genstack.gateway.backends import BackendConfigError, build_registry
from genstack.gateway.settings import GatewaySettings


def settings(**env: Any) -> GatewaySettings:
    return GatewaySettings(gateway_api_keys="k" * 16, **env)


def test_defaults_route_types_and_models() -> None:
    registry = build_registry(settings())
    assert set(registry.backends) == {"xtts", "chatterbox", "comfyui"}
    assert registry.backends["xtts"].queue == "tts.xtts"
    assert registry.backends["chatterbox"].queue == "tts.chatterbox"
    assert registry.backends["comfyui"].queue == "comfyui"
    assert registry.backends["xtts"].url == "http://xtts:8020"
    assert registry.backends["chatterbox"].url == "http://chatterbox:8004"
    assert registry.default_for(JobType.TTS).name == "xtts"  # type: ignore[union-attr]
    assert registry.default_for(JobType.VIDEO).name == "comfyui"  # type: ignore[union-attr]
    speech = registry.speech_models
    assert speech["xtts"] == speech["xtts-v2"] == speech["tts-1"] == speech["tts-1-hd"] == "xtts"
    assert speech["chatterbox"] == "chatterbox"
    assert registry.image_models["dall-e-3"] == "comfyui"
    # ComfyUI takes tts jobs too (VibeVoice): its speech model is a speech model, its own
    # name an image model, and xtts stays the default TTS backend.
    assert speech["vibevoice"] == registry.image_models["comfyui"] == "comfyui"
    assert "comfyui" not in speech and "vibevoice" not in registry.image_models
    assert JobType.TTS in registry.backends["comfyui"].types
    # Proxied speech (and its voice list) is for backends with a model server URL.
    assert [b.name for b in registry.speech_backends()] == ["xtts", "chatterbox"]


def test_a_speech_only_backend_has_only_speech_models_and_a_mixed_one_splits() -> None:
    backends = {
        "voice": {"module": "xtts", "queue": "q1", "models": ["v1"]},
        "mixed": {"module": "comfyui", "queue": "q2", "models": ["pictures", "vibevoice"]},
        "no-tts": {
            "module": "comfyui",
            "queue": "q3",
            "models": ["vibevoice-x"],
            "types": ["image", "video"],
        },
    }
    registry = build_registry(settings(gateway_backends=backends))
    assert registry.speech_models["v1"] == "voice"
    assert registry.speech_models["vibevoice"] == registry.image_models["pictures"] == "mixed"
    assert registry.image_models["vibevoice-x"] == "no-tts"


def test_default_tts_backend_moves_the_openai_aliases() -> None:
    registry = build_registry(settings(gateway_default_tts_backend="chatterbox"))
    assert registry.speech_models["tts-1"] == "chatterbox"


def test_enabled_backends_filter_and_defaults_follow() -> None:
    registry = build_registry(settings(gateway_enabled_backends="chatterbox"))
    assert set(registry.backends) == {"chatterbox"}
    assert registry.default_for(JobType.TTS) is None  # xtts is the default, and it is off
    assert "tts-1" not in registry.speech_models
    with pytest.raises(ValueError, match="unknown backends"):
        build_registry(settings(gateway_enabled_backends="nope"))


def test_a_backend_is_config_plus_a_module_by_dotted_path() -> None:
    backends = {
        "scripted": {
            "module": "genstack.testing.gateway_backend",
            "queue": "test.scripted",
            "types": ["video"],
            "max_queue_depth": 7,
        }
    }
    registry = build_registry(settings(gateway_backends=backends))
    scripted = registry.backends["scripted"]
    assert scripted.types == {JobType.VIDEO}
    assert scripted.max_queue_depth == 7
    assert registry.queues() == {"test.scripted": 7}
    assert scripted.validate_params(JobType.VIDEO, {"steps": 3}) == {
        "steps": 3,
        "sleep_s": 0.0,
        "files": 1,
    }


@pytest.mark.parametrize(
    ("backends", "message"),
    [
        ({"x": {"module": "no_such_module_here", "queue": "q"}}, "cannot be imported"),
        ({"x": {"module": "genstack.core.jobs", "queue": "q"}}, "no PARAMS"),
        ({"Bad Name": {"module": "xtts", "queue": "q"}}, "must match"),
        ({"x": {"module": "xtts", "queue": "q", "types": ["image"]}}, "no params model"),
        (
            {
                "a": {"module": "xtts", "queue": "q", "models": ["m"]},
                "b": {"module": "chatterbox", "queue": "q2", "models": ["m"]},
            },
            "claimed by two",
        ),
    ],
)
def test_bad_backend_configs_are_refused(backends: dict[str, Any], message: str) -> None:
    with pytest.raises(BackendConfigError, match=message):
        build_registry(settings(gateway_backends=backends))


def test_params_models_fill_defaults_and_refuse_bad_values() -> None:
    registry = build_registry(settings())
    xtts = registry.backends["xtts"]
    params = xtts.validate_params(JobType.TTS, {"input": "hello", "voice": "a", "language": "DE"})
    assert params == {
        "input": "hello",
        "voice": "a",
        "response_format": "mp3",
        "speed": 1.0,
        "language": "de",
    }
    assert (
        xtts.validate_params(JobType.TTS, {"input": "x", "voice": "a", "language": "zh"})[
            "language"
        ]
        == "zh-cn"
    )
    assert xtts.validate_params(JobType.TTS, {"input": "x", "voice": {"id": "b"}})["voice"] == "b"
    for bad in (
        {"input": "", "voice": "a"},
        {"input": "x"},
        {"input": "x", "voice": "../../etc/passwd"},
        {"input": "x", "voice": "a/b"},
        {"input": "x", "voice": {"id": "../a"}},
        {"input": "x", "voice": "a", "language": "xx"},
        {"input": "x", "voice": "a", "speed": 9},
        {"input": "x", "voice": "a", "unknown": 1},
    ):
        with pytest.raises(ValidationError):
            xtts.validate_params(JobType.TTS, bad)
    comfy = registry.backends["comfyui"]
    # Unset template params stay unset: the template's defaults apply.
    assert comfy.validate_params(JobType.IMAGE, {"prompt": "a cat"}) == {"prompt": "a cat"}
    speech = comfy.validate_params(JobType.TTS, {"text": "hi", "voice": "alice"})
    assert speech == {"input": "hi", "voice": "alice", "response_format": "mp3"}
    with pytest.raises(ValidationError):  # ComfyUI saves flac, mp3 or opus
        comfy.validate_params(JobType.TTS, {"input": "hi", "response_format": "wav"})
    with pytest.raises(ValidationError):
        comfy.validate_params(JobType.IMAGE, {"prompt": "a cat", "width": 1001})
    workflow = {"3": {"class_type": "KSampler", "inputs": {}}}
    assert comfy.validate_params(JobType.WORKFLOW, {"workflow": workflow})["workflow"] == workflow
    for graph in ({}, {"1": {"inputs": {}}}, {"1": {"class_type": "X", "inputs": []}}):
        with pytest.raises(ValidationError):
            comfy.validate_params(JobType.WORKFLOW, {"workflow": graph})
    chatterbox = registry.backends["chatterbox"]
    # Unset engine fields stay unset: the backend's own defaults apply.
    assert chatterbox.validate_params(JobType.TTS, {"input": "x", "voice": "a"}) == {
        "input": "x",
        "voice": "a",
        "response_format": "mp3",
        "speed": 1.0,
    }
    assert (
        chatterbox.validate_params(JobType.TTS, {"input": "x", "voice": "a", "exaggeration": 0.7})[
            "exaggeration"
        ]
        == 0.7
    )
