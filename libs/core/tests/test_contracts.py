"""The backend contracts: what the gateway stores is what the worker takes back."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from pydantic import ValidationError

from genstack.core.contracts import chatterbox, comfyui, xtts
from genstack.core.contracts.common import Params
from genstack.core.contracts.speech import MAX_JOB_TEXT_CHARS
from genstack.core.jobs import JobType


@pytest.mark.parametrize("module", [xtts, chatterbox, comfyui], ids=lambda m: m.__name__)
def test_each_backend_module_names_its_queue_models_and_params(module: ModuleType) -> None:
    assert isinstance(module.QUEUE, str) and module.QUEUE
    assert module.MODELS and all(isinstance(m, str) for m in module.MODELS)
    assert module.PARAMS
    for job_type, model in module.PARAMS.items():
        assert isinstance(job_type, JobType)
        assert issubclass(model, Params)
        assert model.model_config.get("extra") == "forbid"


@pytest.mark.parametrize(
    ("model", "sent"),
    [
        (xtts.XttsSpeechParams, {"input": "Hi.", "voice": {"id": "Ana"}, "language": "ZH"}),
        (xtts.XttsSpeechParams, {"text": "Hi.", "voice": "Ana", "top_k": 5, "seed": 3}),
        (chatterbox.ChatterboxSpeechParams, {"input": "Hi.", "voice": "a", "exaggeration": 1}),
        (comfyui.ImageParams, {"prompt": "a cat", "width": 512}),
        (comfyui.VideoParams, {"prompt": "a cat", "frames": 9}),
        (comfyui.WorkflowParams, {"workflow": {"1": {"class_type": "EmptyImage"}}}),
    ],
)
def test_what_the_gateway_stores_validates_again_unchanged(
    model: type[Params], sent: dict[str, Any]
) -> None:
    # The gateway stores model_dump(mode="json", exclude_none=True); the worker validates
    # that with the same class.
    stored = model.model_validate(sent).model_dump(mode="json", exclude_none=True)
    again = model.model_validate(stored).model_dump(mode="json", exclude_none=True)
    assert again == stored


def test_speech_params_normalise_as_the_servers_do() -> None:
    params = xtts.XttsSpeechParams.model_validate(
        {"text": "Hi.", "voice": {"id": "Ana"}, "language": "zh"}
    )
    assert (params.input, params.voice, params.language) == ("Hi.", "Ana", "zh-cn")
    assert params.model_dump(exclude_none=True)["input"] == "Hi."


@pytest.mark.parametrize(
    ("sent", "where"),
    [
        ({"input": "Hi.", "text": "Hi.", "voice": "a"}, "text"),
        ({"input": "x" * (MAX_JOB_TEXT_CHARS + 1), "voice": "a"}, "input"),
        ({"input": "Hi.", "voice": "../a"}, "voice"),
        ({"input": "Hi.", "voice": "a", "language": "xx"}, "language"),
        ({"input": "Hi.", "voice": "a", "exaggeration": 1.0}, "exaggeration"),
        ({"input": "Hi.", "voice": "a", "response_format": "ogg"}, "response_format"),
    ],
)
def test_xtts_params_refuse(sent: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as raised:
        xtts.XttsSpeechParams.model_validate(sent)
    assert raised.value.errors()[0]["loc"] == (where,)


def test_the_job_text_limit_is_inclusive() -> None:
    text = "x" * MAX_JOB_TEXT_CHARS
    assert xtts.XttsSpeechParams.model_validate({"input": text, "voice": "a"}).input == text
