"""A full-size, randomly initialised Chatterbox checkpoint in the real on-disk layout.

No model hub is reachable from CI, so tests and benchmarks build one of these and load it
through the production path (``from_local``). chatterbox-tts always builds default-size
models and loads T3 strictly, so the weights are full size (t3_cfg 2.1 GB, s3gen 1.1 GB);
three edits make them usable:

- generation ends: every speech position from STOP_AFTER on carries a large value in one
  dimension of the residual stream that only the stop token's row of the speech head reads
  (and earlier positions a negative one), so every generate() samples STOP_AFTER tokens
  (about 0.5 s of audio) instead of 1000;
- ``exaggeration`` reaches the tokens: random init makes its conditioning vector so large
  that the pre-norm hides its scale, so the value would change nothing; scaled down and read
  by one attention head, it does;
- ``conds.pt``, the built-in voice, is made by the model itself from a synthetic voice.

It speaks noise, deterministically for a given seed. ``genstack-chatterbox
make-test-checkpoint DIR`` writes one.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from genstack.core.contracts.chatterbox import LANGUAGES

STOP_AFTER = 12  # speech tokens before the stop token wins (25 tokens/s: about 0.5 s)
_STOP_GAIN = 30.0
_STOP_POSITION = 200.0
_EARLY_POSITION = 5.0
_EMOTION_SCALE = 0.05
_EMOTION_OUT_STD = 0.1

_SPECIALS = ["[START]", "[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"]


def _tokenizer_json(extra_tokens: list[str], size: int) -> str:
    """A char-level BPE tokenizer (the `tokenizers` json format) with chatterbox's special
    tokens and ``extra_tokens`` (language tags); every id below ``size``."""
    from tokenizers import Tokenizer, models

    chars = [chr(c) for c in range(0x21, 0x7F)] + [chr(c) for c in range(0xA1, 0x250)]
    tokens = [*_SPECIALS, *extra_tokens, *chars][:size]
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))  # noqa: S106
    tokenizer.add_special_tokens([*_SPECIALS, *extra_tokens])
    return str(tokenizer.to_str(pretty=False))


def _reference_wave(seconds: float, pitch_hz: float, sample_rate: int) -> Any:
    """A voiced, vowel-like test signal (harmonics with vibrato and a syllable envelope)."""
    import numpy as np

    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f = pitch_hz * (1 + 0.03 * np.sin(2 * math.pi * 5 * t))
    phase = 2 * math.pi * np.cumsum(f) / sample_rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.6 + 0.4 * np.sin(2 * math.pi * 3 * t)
    return (0.2 * wave * envelope).astype(np.float32)


def _route_stop(t3: Any) -> None:
    """Stop after STOP_AFTER speech tokens, exaggeration effective (see the module doc).

    Residual dimension 0 is kept for position: no layer writes into it, so at a speech
    position it holds exactly that position's value (negative before STOP_AFTER, large
    after), and the stop token's row of the speech head reads only it. Exaggeration: the
    emotion vector is small enough for the first layer's RMSNorm to keep its scale (its
    epsilon dominates), and head 0 of the first layer attends from speech positions to it
    with a strength and a value that grow with it (its query reads dimension 0, its key
    dimension 1, along a RoPE pair that barely rotates over a sentence)."""
    import torch

    with torch.no_grad():
        for layer in t3.tfmr.layers:
            layer.self_attn.o_proj.weight[0, :] = 0.0
            layer.mlp.down_proj.weight[0, :] = 0.0
        for table in (t3.speech_emb.weight, t3.text_emb.weight, t3.speech_head.weight):
            table[:, 0] = 0.0
        t3.speech_head.weight[t3.hp.stop_speech_token, 0] = _STOP_GAIN
        positions = t3.speech_pos_emb.emb.weight
        positions[:, 0] = -_EARLY_POSITION
        positions[STOP_AFTER:, 0] = _STOP_POSITION
        if not t3.hp.emotion_adv:
            return
        emotion = t3.cond_enc.emotion_adv_fc.weight  # (dim, 1)
        emotion.zero_()
        emotion[1, 0] = _EMOTION_SCALE
        attention = t3.tfmr.layers[0].self_attn
        pair = attention.head_dim // 2 - 1  # RoPE's slowest pair of head 0
        attention.q_proj.weight[pair, :] = 0.0
        attention.q_proj.weight[pair, 0] = -1.0
        attention.k_proj.weight[pair, :] = 0.0
        attention.k_proj.weight[pair, 1] = 1.0
        head = slice(0, attention.head_dim)
        attention.v_proj.weight[head, :] = 0.0
        attention.v_proj.weight[head, 1] = torch.sign(torch.randn(attention.head_dim))
        attention.o_proj.weight[:, head].normal_(0.0, _EMOTION_OUT_STD)
        attention.o_proj.weight[0, :] = 0.0


def _save_safetensors(state: dict[str, Any], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({key: value.detach().contiguous().clone() for key, value in state.items()}, path)


def build_test_checkpoint(directory: Path, *, variant: str = "english", seed: int = 1234) -> Path:
    """Write a complete random-weight checkpoint of ``variant`` (english | multilingual)
    into ``directory`` and return it. Peak memory about 7 GB; a few minutes on 2 cores."""
    import torch
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.modules.t3_config import T3Config
    from chatterbox.models.voice_encoder import VoiceEncoder

    if variant not in ("english", "multilingual"):
        raise ValueError(f"no test checkpoint for {variant!r} (english or multilingual)")
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    multilingual = variant == "multilingual"

    ve = VoiceEncoder()
    if multilingual:
        torch.save(ve.state_dict(), directory / "ve.pt")
    else:
        _save_safetensors(ve.state_dict(), directory / "ve.safetensors")
    del ve

    config = T3Config.multilingual() if multilingual else T3Config.english_only()
    t3 = T3(config)
    _route_stop(t3)
    name = "t3_mtl23ls_v2.safetensors" if multilingual else "t3_cfg.safetensors"
    _save_safetensors(t3.state_dict(), directory / name)
    del t3

    s3gen = S3Gen()
    if multilingual:
        torch.save(s3gen.state_dict(), directory / "s3gen.pt")
    else:
        _save_safetensors(s3gen.state_dict(), directory / "s3gen.safetensors")
    del s3gen

    if multilingual:
        tags = [f"[{code}]" for code in LANGUAGES]
        (directory / "grapheme_mtl_merged_expanded_v1.json").write_text(
            _tokenizer_json(tags, config.text_tokens_dict_size), encoding="utf-8"
        )
    else:
        (directory / "tokenizer.json").write_text(
            _tokenizer_json([], config.text_tokens_dict_size), encoding="utf-8"
        )
    _write_default_voice(directory, variant)
    return directory


def _write_default_voice(directory: Path, variant: str) -> None:
    """conds.pt: the model's own conditioning of a synthetic voice, loaded the production
    way (this also proves the checkpoint loads)."""
    import soundfile

    from genstack.chatterbox.engine import _model_class

    model = _model_class(variant).from_local(directory, "cpu")
    with tempfile.TemporaryDirectory(prefix="chatterbox-ref-") as tmp:
        path = Path(tmp) / "default.wav"
        soundfile.write(path, _reference_wave(1.5, 140.0, 24_000), 24_000)
        model.prepare_conditionals(str(path))
    model.conds.save(directory / "conds.pt")


def cache_key(variant: str) -> str:
    """What a cached test checkpoint of ``variant`` is kept under: this builder's source and
    the chatterbox-tts version (either changing makes a new one)."""
    import hashlib
    from importlib.metadata import version

    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return f"{variant}-chatterbox{version('chatterbox-tts')}-{source}"
