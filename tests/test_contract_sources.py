"""One source per backend contract: the gateway and the workers validate a backend's jobs
with the very same class, and no package defines a second one."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from genstack.core.contracts import chatterbox, comfyui, xtts
from genstack.core.jobs import JobType
from genstack.gateway.backends import build_registry
from genstack.gateway.settings import GatewaySettings
from genstack.tts.job import SpeechJobHandler
from genstack.xtts.settings import XttsSettings

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / "libs/core/src/genstack/core/contracts"
CLASS = re.compile(r"\w*(Speech|Image|Video|Workflow)Params$")
CONSTANT = re.compile(r"^(QUEUE|LANGUAGES|LANGUAGE_NAMES|OPENAI_\w+_ALIASES|MAX_JOB_\w*CHARS)$")
# Functions that decide what a contract accepts (the server and the gateway must agree).
FUNCTION = re.compile(r"^match_language$")


def contract_definitions(path: Path) -> list[str]:
    """Module-level definitions in ``path`` that belong in genstack.core.contracts."""
    found: list[str] = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ClassDef) and CLASS.match(node.name):
            found.append(node.name)
        if isinstance(node, ast.FunctionDef) and FUNCTION.match(node.name):
            found.append(node.name)
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        found += [t.id for t in targets if isinstance(t, ast.Name) and CONSTANT.match(t.id)]
    return found


def second_definitions(root: Path) -> set[str]:
    sources = [*root.glob("libs/*/src/**/*.py"), *root.glob("services/*/src/**/*.py")]
    return {
        f"{path.relative_to(root)}:{name}"
        for path in sources
        if not path.is_relative_to(root / CONTRACTS.relative_to(ROOT))
        for name in contract_definitions(path)
    }


def test_no_backend_contract_is_defined_outside_genstack_core_contracts() -> None:
    assert second_definitions(ROOT) == set()


def test_the_tts_servers_request_has_the_contracts_limits() -> None:
    """A job the gateway takes must be a request the TTS server takes: every sampling field
    of the xtts job params has the same constraints in the server's SpeechRequest."""
    from genstack.core.contracts.xtts import XttsSpeechParams
    from genstack.tts.schemas import SpeechRequest

    shared = set(XttsSpeechParams.model_fields) & set(SpeechRequest.model_fields) - {
        "input",  # the server's own limit is TTS_MAX_INPUT_CHARS (413); jobs are split in parts
        "voice",  # a name here, a name or {"id"} there: the server resolves it (404 if unknown)
    }
    assert {"speed", "temperature", "top_p", "top_k", "seed", "language"} <= shared
    base = {"input": "Hi.", "voice": "Ana"}
    for name in sorted(shared):
        job, request = XttsSpeechParams.model_fields[name], SpeechRequest.model_fields[name]
        assert job.metadata == request.metadata, name
        if name == "response_format":  # None there: the server's default (mp3 or WAV)
            assert request.annotation == job.annotation | None, name
            continue
        if name == "language":  # the server's type plus XTTS's check, as the server matches
            assert XttsSpeechParams.model_validate({**base, name: "ZH"}).language == "zh-cn"
            with pytest.raises(ValidationError):
                XttsSpeechParams.model_validate({**base, name: "tlh"})
            continue
        assert job.annotation == request.annotation, name


def test_the_scan_finds_a_second_definition(tmp_path: Path) -> None:
    module = tmp_path / "services/demo/src/genstack/demo/worker.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        'QUEUE = "tts.demo"\nLANGUAGES: tuple[str, ...] = ("en",)\n'
        "class DemoSpeechParams:\n    pass\n"
        'OPENAI_TTS_ALIASES = ("tts-1",)\nMAX_JOB_CHARS = 5\n'
    )
    allowed = tmp_path / CONTRACTS.relative_to(ROOT) / "demo.py"
    allowed.parent.mkdir(parents=True)
    allowed.write_text('QUEUE = "tts.demo"\n')
    where = "services/demo/src/genstack/demo/worker.py"
    assert second_definitions(tmp_path) == {
        f"{where}:{name}"
        for name in (
            "QUEUE",
            "LANGUAGES",
            "DemoSpeechParams",
            "OPENAI_TTS_ALIASES",
            "MAX_JOB_CHARS",
        )
    }


class _BuiltError(Exception):
    """Raised by the spy once the worker has built its handler: nothing else is started."""


def test_the_xtts_worker_validates_with_the_gateways_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from genstack.xtts import worker

    given: list[Any] = []

    def spy(self: SpeechJobHandler, server_url: str, params_model: Any, **_: Any) -> None:
        given.append(params_model)
        raise _BuiltError

    monkeypatch.setattr(SpeechJobHandler, "__init__", spy)
    with pytest.raises(_BuiltError):
        worker.run(XttsSettings(redis_url="redis://127.0.0.1:1/0"))
    registry = build_registry(GatewaySettings(gateway_api_keys="k" * 16))
    backend = registry.backends["xtts"]
    assert given == [backend.params[JobType.TTS]]
    assert given[0] is xtts.XttsSpeechParams
    assert backend.queue == xtts.QUEUE == vars(worker)["QUEUE"]  # the queue it consumes


@pytest.mark.parametrize("contract", [xtts, chatterbox, comfyui], ids=lambda m: m.__name__)
def test_the_gateways_backends_are_their_contracts(contract: Any) -> None:
    registry = build_registry(GatewaySettings(gateway_api_keys="k" * 16))
    name = contract.__name__.rsplit(".", 1)[-1]
    backend = registry.backends[name]
    assert backend.queue == contract.QUEUE
    # A backend that makes more than speech names its speech models (ComfyUI: vibevoice);
    # every model of a speech-only one is a speech model.
    speech = getattr(contract, "SPEECH_MODELS", None)
    assert backend.models == (*contract.MODELS, *(speech or ()))
    assert backend.speech_models == frozenset(contract.MODELS if speech is None else speech)
    assert dict(backend.params) == contract.PARAMS
    for job_type, model in backend.params.items():
        assert model is contract.PARAMS[job_type]
