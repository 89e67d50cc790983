"""Resemble AI's Chatterbox (chatterbox-tts: English, Multilingual or Turbo) behind the shared
TTS server.

torch and chatterbox are imported in ``load`` (on the model thread), never at module import,
so the worker and the CLI start without them. chatterbox-tts keeps the voice on the model
(``model.conds``); the engine sets it before each generate() from the conditioning the server
cached, so requests never mix voices. The library's Perth watermark stays on.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from genstack.core.contracts.chatterbox import LANGUAGE_NAMES as LANGUAGE_NAMES
from genstack.core.contracts.chatterbox import LANGUAGES, MODELS
from genstack.tts.engine import EngineError, Samples, SynthesisParams

log = logging.getLogger(__name__)

DEFAULT_VOICE = "default"  # conds.pt, the voice the checkpoint ships
# chatterbox-tts 0.1.7 builds no unconditional batch for cfg_weight == 0 and then fails in
# generate() (a batch of 1 against 2). Guidance this small changes no logit measurably, so
# 0 ("no guidance") runs as this.
NO_GUIDANCE = 1e-6
# The seeds are process-wide (torch, numpy, random): one seeded generation at a time.
_SEED_LOCK = threading.Lock()


class ChatterboxParams(BaseModel):
    """Chatterbox's own request fields (temperature, top_p, seed, ... every engine has)."""

    model_config = ConfigDict(extra="ignore")

    exaggeration: float | None = Field(
        default=None, ge=0.25, le=2.0, description="Emotion intensity (0.5: neutral)."
    )
    cfg_weight: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Guidance: pace and adherence (0: none)."
    )
    min_p: float | None = Field(default=None, ge=0.0, le=1.0, description="Min-p sampling.")


class ChatterboxEngine:
    reference_sample_rate = 24_000  # S3GEN_SR: what prepare_conditionals works at
    native_speed = False  # the server time-stretches (pitch kept)
    extra_params = ChatterboxParams

    def __init__(self, model_dir: Path, *, variant: str = "english", device: str = "auto") -> None:
        self.model_dir = model_dir
        self.variant = variant
        self.device_setting = device
        self.model_ids: Sequence[str] = (*MODELS, f"chatterbox-{variant}")
        self.languages: Sequence[str] = LANGUAGES if variant == "multilingual" else ("en",)
        self.sample_rate = 24_000
        self.device = "cpu"
        self._model: Any = None
        self._default: Any = None

    # loading -------------------------------------------------------------------------------
    def load(self) -> None:
        from genstack.chatterbox.checkpoint import ensure_checkpoint

        folder = ensure_checkpoint(self.model_dir, self.variant)  # before the slow imports
        import torch

        if self.device_setting == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            self.device = self.device_setting
        if self.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("CHATTERBOX_DEVICE=cuda but no CUDA device is available")
        model = load_model(self.variant, folder, self.device)
        if model.watermarker is None:  # resemble-perth without pkg_resources: fail now
            raise RuntimeError("the Perth watermarker did not load (setuptools < 81 needed)")
        self._model = model
        self.sample_rate = int(model.sr)
        self._default = model.conds
        log.info(
            "Chatterbox loaded",
            extra={
                "variant": self.variant,
                "device": self.device,
                "model_dir": str(folder),
                "default_voice": model.conds is not None,
            },
        )

    # voices --------------------------------------------------------------------------------
    def builtin_voices(self) -> Sequence[str]:
        return (DEFAULT_VOICE,) if self._default is not None else ()

    def builtin_voice(self, name: str) -> Any:
        if name != DEFAULT_VOICE or self._default is None:
            raise KeyError(name)
        return self._default

    def make_voice(self, audio: Samples) -> Any:
        """Zero-shot cloning: the model's own prepare_conditionals on the reference (written
        to a private temporary WAV, the form it reads)."""
        import soundfile

        seconds = audio.size / self.reference_sample_rate
        if self.variant == "turbo" and seconds <= 5.0:
            raise EngineError("Chatterbox Turbo needs a reference longer than 5 seconds")
        model = self._model
        with tempfile.TemporaryDirectory(prefix="chatterbox-ref-") as tmp:
            path = Path(tmp) / "reference.wav"
            soundfile.write(path, np.asarray(audio, dtype=np.float32), self.reference_sample_rate)
            model.prepare_conditionals(str(path))
        made, model.conds = model.conds, self._default
        return made

    # synthesis -----------------------------------------------------------------------------
    def max_chunk_chars(self, language: str) -> int:
        return 300  # chatterbox-tts-api's chunk size: longer text drifts and truncates

    def synthesize(
        self, text: str, voice: Any, params: SynthesisParams, *, stream: bool
    ) -> Iterator[Samples]:
        """One generate() per sentence (chatterbox-tts 0.1.7 has no streaming decoder: the
        server streams sentence by sentence)."""
        model = self._model
        extra = params.extra if isinstance(params.extra, ChatterboxParams) else ChatterboxParams()
        options = self._options(params, extra)
        # A fresh Conditionals per call: generate() replaces conds.t3 when exaggeration
        # differs, which must not change the cached voice.
        model.conds = type(voice)(voice.t3, voice.gen)
        try:
            with _SEED_LOCK:
                if params.seed is not None:
                    _seed_everything(params.seed)
                wav = model.generate(text, **options)
        except (AssertionError, ValueError) as exc:
            raise EngineError(f"Chatterbox cannot read this text ({exc})") from exc
        finally:
            model.conds = self._default
        yield np.ascontiguousarray(wav.detach().cpu().numpy().reshape(-1), dtype=np.float32)

    def _options(self, params: SynthesisParams, extra: ChatterboxParams) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if params.temperature is not None:
            options["temperature"] = params.temperature
        if params.top_p is not None:
            options["top_p"] = params.top_p
        if params.repetition_penalty is not None:
            options["repetition_penalty"] = params.repetition_penalty
        if self.variant == "turbo":
            # Turbo has no guidance, exaggeration or min_p (the library ignores them).
            if params.top_k is not None:
                options["top_k"] = params.top_k
            return options
        options["exaggeration"] = 0.5 if extra.exaggeration is None else extra.exaggeration
        cfg_weight = 0.5 if extra.cfg_weight is None else extra.cfg_weight
        options["cfg_weight"] = max(cfg_weight, NO_GUIDANCE)
        if extra.min_p is not None:
            options["min_p"] = extra.min_p
        if self.variant == "multilingual":
            options["language_id"] = params.language
        return options


def load_model(variant: str, folder: Path, device: str) -> Any:
    """chatterbox-tts's ``from_local`` for ``variant``, the multilingual tokenizer's extras
    taken from the checkpoint folder (the service and the test checkpoint builder load so)."""
    from genstack.chatterbox.checkpoint import load_cangjie, pkuseg_home

    if variant == "multilingual":
        # spacy_pkuseg reads PKUSEG_HOME once, when from_local first imports it; without its
        # model there it downloads one from GitHub (a PKUSEG_HOME the user set wins).
        home = pkuseg_home(folder)
        if not os.environ.get("PKUSEG_HOME"):
            os.environ["PKUSEG_HOME"] = str(home)
    model = _model_class(variant).from_local(folder, device)
    if variant == "multilingual" and not load_cangjie(model, folder):
        log.warning("no Cangjie table: Chinese is read as raw characters")
    return model


def _model_class(variant: str) -> Any:
    if variant == "multilingual":
        from chatterbox.mtl_tts import ChatterboxMultilingualTTS

        return ChatterboxMultilingualTTS
    if variant == "turbo":
        from chatterbox.tts_turbo import ChatterboxTurboTTS

        return ChatterboxTurboTTS
    from chatterbox.tts import ChatterboxTTS

    return ChatterboxTTS


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
