"""The XTTS v2 engine (coqui-tts) behind the shared TTS server.

torch and TTS are imported in ``load`` (on the model thread), never at module import, so the
worker and the CLI start without them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from genstack.core.contracts.xtts import LANGUAGE_NAMES as LANGUAGE_NAMES  # compat's names
from genstack.core.contracts.xtts import LANGUAGES, MODELS
from genstack.tts.engine import EngineError, Samples, SynthesisParams
from genstack.xtts.checkpoint import ensure_checkpoint

log = logging.getLogger(__name__)


class XttsParams(BaseModel):
    """XTTS's own request fields (besides temperature, top_p, ... which every engine has)."""

    model_config = ConfigDict(extra="ignore")

    stream_chunk_size: int | None = Field(
        default=None, ge=5, le=400, description="GPT tokens per streamed chunk."
    )


class XttsEngine:
    model_ids: Sequence[str] = MODELS
    reference_sample_rate = 22_050  # what XTTS's conditioning encoders work at
    native_speed = True
    extra_params = XttsParams

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "auto",
        use_deepspeed: bool = False,
        stream_chunk_size: int = 20,
    ) -> None:
        self.model_dir = model_dir
        self.device_setting = device
        self.use_deepspeed = use_deepspeed
        self.stream_chunk_size = stream_chunk_size
        self.sample_rate = 24_000
        self.languages: Sequence[str] = LANGUAGES
        self.device = "cpu"
        self._model: Any = None
        self._config: Any = None
        self._speakers: dict[str, Any] = {}

    # loading -------------------------------------------------------------------------------
    def load(self) -> None:
        ensure_checkpoint(self.model_dir)  # before the slow imports: a missing model fails fast
        import torch
        from TTS.tts.configs.xtts_config import XttsConfig
        from TTS.tts.models.xtts import Xtts

        if self.device_setting == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            self.device = self.device_setting
        if self.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("XTTS_DEVICE=cuda but no CUDA device is available")
        config = XttsConfig()
        config.load_json(str(self.model_dir / "config.json"))
        model = Xtts(config)
        model.load_checkpoint(
            config,
            checkpoint_dir=str(self.model_dir),
            eval=True,
            use_deepspeed=self.use_deepspeed,
        )
        model.to(self.device)
        self._model = model
        self._config = config
        self.sample_rate = int(config.audio.output_sample_rate)
        self.languages = tuple(config.languages) or LANGUAGES
        manager = getattr(model, "speaker_manager", None)
        self._speakers = dict(manager.speakers) if manager is not None else {}
        log.info(
            "XTTS loaded",
            extra={
                "device": self.device,
                "model_dir": str(self.model_dir),
                "builtin_voices": len(self._speakers),
            },
        )

    # voices --------------------------------------------------------------------------------
    def builtin_voices(self) -> Sequence[str]:
        return tuple(self._speakers)

    def builtin_voice(self, name: str) -> tuple[Any, Any]:
        entry = self._speakers[name]
        return (
            entry["gpt_cond_latent"].to(self.device),
            entry["speaker_embedding"].to(self.device),
        )

    def make_voice(self, audio: Samples) -> tuple[Any, Any]:
        import torch

        model, config = self._model, self._config
        wave = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).unsqueeze(0)
        rate = self.reference_sample_rate
        if wave.shape[-1] < rate // 3:
            raise EngineError("the reference audio is too short for XTTS (under 0.33 s)")
        # As Xtts.get_conditioning_latents does, from audio we decoded ourselves (no file
        # is handed to torchaudio): speaker embedding from the first max_ref_len seconds,
        # GPT latents from the first gpt_cond_len seconds in gpt_cond_chunk_len chunks.
        reference = wave[:, : rate * int(config.max_ref_len)].to(self.device)
        embedding = model.get_speaker_embedding(reference, rate)
        latent = model.get_gpt_cond_latents(
            wave.to(self.device),
            rate,
            length=int(config.gpt_cond_len),
            chunk_length=int(config.gpt_cond_chunk_len),
        )
        return latent, embedding

    # synthesis -----------------------------------------------------------------------------
    def max_chunk_chars(self, language: str) -> int:
        limits = getattr(getattr(self._model, "tokenizer", None), "char_limits", {})
        return int(limits.get(language.split("-")[0], 250))

    def synthesize(
        self, text: str, voice: tuple[Any, Any], params: SynthesisParams, *, stream: bool
    ) -> Iterator[Samples]:
        import torch

        model, config = self._model, self._config
        if params.seed is not None:
            torch.manual_seed(params.seed)
            if self.device == "cuda":
                torch.cuda.manual_seed_all(params.seed)
        latent, embedding = voice
        options: dict[str, Any] = {
            "temperature": _pick(params.temperature, config.temperature),
            "length_penalty": _pick(params.length_penalty, config.length_penalty),
            "repetition_penalty": _pick(params.repetition_penalty, config.repetition_penalty),
            "top_k": _pick(params.top_k, config.top_k),
            "top_p": _pick(params.top_p, config.top_p),
            "speed": params.speed,
            "enable_text_splitting": False,  # the server splits, per language limits
        }
        try:
            # The text front end fails on what it cannot read (digits in Hindi: num2words
            # has no Hindi): the client's text, not a server fault.
            model.tokenizer.encode(text.strip().lower(), lang=params.language)
        except (NotImplementedError, KeyError, ValueError) as exc:
            raise EngineError(
                f"XTTS cannot read this text in {params.language!r} "
                f"({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})"
            ) from exc
        if stream:
            extra = params.extra if isinstance(params.extra, XttsParams) else XttsParams()
            chunk_size = extra.stream_chunk_size or self.stream_chunk_size
            for chunk in model.inference_stream(
                text, params.language, latent, embedding, stream_chunk_size=chunk_size, **options
            ):
                yield chunk.detach().float().cpu().numpy().reshape(-1)
        else:
            out = model.inference(text, params.language, latent, embedding, **options)
            yield np.asarray(out["wav"], dtype=np.float32).reshape(-1)


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value
