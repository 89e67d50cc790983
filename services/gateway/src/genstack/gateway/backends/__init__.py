"""Backends: configuration (name, queue, URL, model names) plus one small params module.

A params module defines ``PARAMS``, a map from job type to the pydantic model that
validates that type's ``params``, and, when the backend takes `tts` jobs and other types
too, ``SPEECH_MODELS``: which of its model names are speech models (the others are image
models). The modules here take both from the backend's contract
(``genstack.core.contracts.<backend>``), which the backend's worker validates with too.
Adding a backend is a contract module, a params module here (or anywhere importable, named
by its dotted path) and an entry in GATEWAY_BACKENDS; nothing else.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from genstack.core.contracts.comfyui import OPENAI_IMAGE_ALIASES
from genstack.core.contracts.speech import OPENAI_TTS_ALIASES
from genstack.core.jobs import JobType
from genstack.gateway.settings import BackendConfig, GatewaySettings

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class BackendConfigError(ValueError):
    """The backend configuration is unusable (start-up refuses it)."""


@dataclass(frozen=True)
class Backend:
    name: str
    queue: str
    params: Mapping[JobType, type[BaseModel]]
    url: str | None = None
    models: tuple[str, ...] = ()
    max_queue_depth: int = 1000
    speech_models: frozenset[str] = frozenset()  # of ``models``; the others are image models

    @property
    def types(self) -> frozenset[JobType]:
        return frozenset(self.params)

    def validate_params(self, job_type: JobType, params: Any) -> dict[str, Any]:
        """The params as the worker will get them (the gateway's defaults filled in, unset
        optional fields left out, so the backend's own defaults apply); raises
        pydantic.ValidationError, or KeyError if the backend does not take ``job_type``."""
        model = self.params[job_type]
        return model.model_validate(params).model_dump(mode="json", exclude_none=True)


@dataclass(frozen=True)
class Registry:
    backends: Mapping[str, Backend]
    defaults: Mapping[JobType, str] = field(default_factory=dict)
    speech_models: Mapping[str, str] = field(default_factory=dict)  # model -> backend
    image_models: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str) -> Backend | None:
        return self.backends.get(name)

    def default_for(self, job_type: JobType) -> Backend | None:
        name = self.defaults.get(job_type)
        return None if name is None else self.backends.get(name)

    def queues(self) -> dict[str, int]:
        """Queue -> depth limit (the smallest limit of the backends sharing it)."""
        limits: dict[str, int] = {}
        for backend in self.backends.values():
            limits[backend.queue] = min(limits.get(backend.queue, 1 << 62), backend.max_queue_depth)
        return limits

    def speech_backends(self) -> list[Backend]:
        return [b for b in self.backends.values() if JobType.TTS in b.types and b.url]


def load_module(name: str) -> ModuleType:
    path = name if "." in name else f"{__name__}.{name}"
    try:
        return importlib.import_module(path)
    except ImportError as exc:
        raise BackendConfigError(f"backend module {path!r} cannot be imported: {exc}") from exc


def build_backend(name: str, config: BackendConfig, default_depth: int) -> Backend:
    if not _NAME.match(name):
        raise BackendConfigError(f"backend name {name!r} must match {_NAME.pattern}")
    module = load_module(config.module)
    params = getattr(module, "PARAMS", None)
    if not isinstance(params, Mapping) or not params:
        raise BackendConfigError(f"backend module {module.__name__} defines no PARAMS map")
    types = set(params) if config.types is None else set(config.types)
    missing = types - set(params)
    if missing:
        raise BackendConfigError(
            f"backend {name}: module {module.__name__} has no params model for {sorted(missing)}"
        )
    # A speech-only backend's models are speech models; one that makes images too (ComfyUI,
    # with VibeVoice) names its speech models in its module.
    declared = frozenset(getattr(module, "SPEECH_MODELS", ()))
    if JobType.TTS not in types:
        speech: frozenset[str] = frozenset()
    elif JobType.IMAGE in types:
        speech = declared & set(config.models)
    else:
        speech = frozenset(config.models)
    return Backend(
        name=name,
        queue=config.queue,
        params={JobType(t): params[t] for t in sorted(types)},
        url=config.url.rstrip("/") if config.url else None,
        models=tuple(config.models),
        max_queue_depth=config.max_queue_depth or default_depth,
        speech_models=speech,
    )


def build_registry(settings: GatewaySettings) -> Registry:
    backends = {
        name: build_backend(name, config, settings.gateway_max_queue_depth)
        for name, config in settings.backend_configs().items()
    }
    wanted = {
        JobType.TTS: settings.gateway_default_tts_backend,
        JobType.IMAGE: settings.gateway_default_image_backend,
        JobType.VIDEO: settings.gateway_default_video_backend,
        JobType.WORKFLOW: settings.gateway_default_workflow_backend,
    }
    # A default that is not served (disabled, or lacks the type) is no default.
    defaults = {
        job_type: name
        for job_type, name in wanted.items()
        if name in backends and job_type in backends[name].types
    }
    speech: dict[str, str] = {}
    images: dict[str, str] = {}
    for backend in backends.values():
        for model in backend.models:
            table = speech if model in backend.speech_models else images
            if model in speech or model in images:
                raise BackendConfigError(f"model name {model!r} is claimed by two backends")
            table[model] = backend.name
    if JobType.TTS in defaults:
        for alias in OPENAI_TTS_ALIASES:
            speech.setdefault(alias, defaults[JobType.TTS])
    if JobType.IMAGE in defaults:
        for alias in OPENAI_IMAGE_ALIASES:
            images.setdefault(alias, defaults[JobType.IMAGE])
    return Registry(backends=backends, defaults=defaults, speech_models=speech, image_models=images)
