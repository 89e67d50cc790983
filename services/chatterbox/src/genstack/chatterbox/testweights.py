"""A full-size, randomly initialised Chatterbox checkpoint in the real on-disk layout.

No model hub is reachable from CI, so tests and benchmarks build one of these and load it
through the production path (``from_local``). chatterbox-tts always builds default-size
models and loads T3 strictly, so the weights are full size (t3_cfg 2.1 GB, s3gen 1.1 GB);
three edits make them usable:

- generation ends: every speech position from STOP_AFTER on carries a large value in one
  dimension of the residual stream that only the stop token's row of the speech head reads
  (and earlier positions a negative one), so every generate() samples STOP_AFTER tokens
  (about 0.5 s of audio) instead of 1000;
- no token outside the speech codebook (ids 6561 up, the stop token aside) is ever sampled:
  the multilingual model, unlike the English one, hands them to S3Gen unfiltered, which a
  trained model never provokes and random weights would;
- the text reaches the tokens: random init leaves the tokens a chain of the previous token
  that one text token more or less barely sways (the same seed gave the same audio for
  "[fr]" and "[de]"), so one attention head reads the text, strongly;
- ``exaggeration`` reaches the tokens: random init makes its conditioning vector so large
  that the pre-norm hides its scale, so the value would change nothing; scaled down and read
  by one attention head, it does;
- ``conds.pt``, the built-in voice, is made by the model itself from a synthetic voice.

The multilingual one also holds its tokenizer's Chinese extras, small but real: a Cangjie
table for a few characters and a spacy_pkuseg segmenter trained on a few sentences, zipped
as the catalogue provisions it (the service unpacks it at load).

It speaks noise, deterministically for a given seed. ``genstack-chatterbox
make-test-checkpoint DIR`` writes one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from genstack.chatterbox.checkpoint import CANGJIE_FILE, PKUSEG_FOLDER, PKUSEG_MODEL
from genstack.core.contracts.chatterbox import LANGUAGES

STOP_AFTER = 12  # speech tokens before the stop token wins (25 tokens/s: about 0.5 s)
_STOP_GAIN = 30.0
_STOP_POSITION = 200.0
_EARLY_POSITION = 5.0
_CODEBOOK = 6561  # S3Gen's speech tokens; the ids above are T3's specials and spare rows
_OFF_BOOK_GAIN = 300.0
# Turbo: the stop token's logit over the flat ones (e^(b/0.8) against 0.95 * 6561 tokens
# after top-p: about one draw in ten, so about 0.4 s of audio a sentence).
_TURBO_STOP_BIAS = 5.2
_GPT2_EOS = "<|endoftext|>"
_TEXT_KEY = 20.0  # the text positions' value in dimension 3, which head 1's key reads
_TEXT_VALUE_GAIN = 50.0
_EMOTION_SCALE = 0.05
_EMOTION_OUT_STD = 0.1

_SPECIALS = ["[START]", "[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"]
# The multilingual vocabulary's Cangjie tokens ("[cj_a]"...; "[cj_.]" ends a character).
_CANGJIE_TOKENS = [f"[cj_{c}]" for c in "abcdefghijklmnopqrstuvwxyz."]
# Chinese the test segmenter learns and the test Cangjie table covers (codes are made up).
_CHINESE_SENTENCES = [
    "你好 世界 。",
    "我 爱 北京 天安门 。",
    "今天 天气 很 好 。",
    "这 是 一个 测试 。",
]


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
    after), and the stop token's row of the speech head reads only it. Dimension 2 is kept
    the same way, negative at every speech position, and only the rows of tokens outside
    the codebook read it, strongly: they are never sampled. Exaggeration: the
    emotion vector is small enough for the first layer's RMSNorm to keep its scale (its
    epsilon dominates), and head 0 of the first layer attends from speech positions to it
    with a strength and a value that grow with it (its query reads dimension 0, its key
    dimension 1, along a RoPE pair that barely rotates over a sentence). Text: every text
    position holds a large value in dimension 3 (speech positions none), and head 1 of the
    first layer attends from speech positions to it the same way, with its values (the text
    tokens' own, random) scaled up."""
    import torch

    with torch.no_grad():
        kept = [0, 2]  # position, off-codebook
        for layer in t3.tfmr.layers:
            layer.self_attn.o_proj.weight[kept, :] = 0.0
            layer.mlp.down_proj.weight[kept, :] = 0.0
        for table in (t3.speech_emb.weight, t3.text_emb.weight, t3.speech_head.weight):
            table[:, kept] = 0.0
        t3.speech_head.weight[t3.hp.stop_speech_token, 0] = _STOP_GAIN
        off_book = list(range(_CODEBOOK, t3.hp.speech_tokens_dict_size))
        off_book.remove(t3.hp.stop_speech_token)
        t3.speech_head.weight[off_book, 2] = _OFF_BOOK_GAIN
        positions = t3.speech_pos_emb.emb.weight
        positions[:, 0] = -_EARLY_POSITION
        positions[STOP_AFTER:, 0] = _STOP_POSITION
        positions[:, 2] = -_EARLY_POSITION
        attention = t3.tfmr.layers[0].self_attn
        size = attention.head_dim
        pair = size // 2 - 1  # RoPE's slowest pair of a head
        t3.speech_emb.weight[:, 3] = 0.0
        positions[:, 3] = 0.0
        t3.text_emb.weight[:, 3] = _TEXT_KEY
        t3.text_pos_emb.emb.weight[:, 3] = 0.0
        text_head = slice(size, 2 * size)  # head 1
        attention.q_proj.weight[size + pair, :] = 0.0
        attention.q_proj.weight[size + pair, 0] = -1.0
        attention.k_proj.weight[size + pair, :] = 0.0
        attention.k_proj.weight[size + pair, 3] = 1.0
        attention.v_proj.weight[text_head, :] *= _TEXT_VALUE_GAIN
        attention.v_proj.weight[text_head, 3] = 0.0  # what every text position shares
        attention.o_proj.weight[:, text_head].normal_(0.0, _EMOTION_OUT_STD)
        attention.o_proj.weight[kept, :] = 0.0
        if not t3.hp.emotion_adv:
            return
        emotion = t3.cond_enc.emotion_adv_fc.weight  # (dim, 1)
        emotion.zero_()
        emotion[1, 0] = _EMOTION_SCALE
        attention.q_proj.weight[pair, :] = 0.0
        attention.q_proj.weight[pair, 0] = -1.0
        attention.k_proj.weight[pair, :] = 0.0
        attention.k_proj.weight[pair, 1] = 1.0
        head = slice(0, size)
        attention.v_proj.weight[head, :] = 0.0
        attention.v_proj.weight[head, 1] = torch.sign(torch.randn(size))
        attention.o_proj.weight[:, head].normal_(0.0, _EMOTION_OUT_STD)
        attention.o_proj.weight[kept, :] = 0.0


def _save_safetensors(state: dict[str, Any], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({key: value.detach().contiguous().clone() for key, value in state.items()}, path)


def build_test_checkpoint(directory: Path, *, variant: str = "english", seed: int = 1234) -> Path:
    """Write a complete random-weight checkpoint of ``variant`` (english | multilingual |
    turbo) into ``directory`` and return it. Peak memory about 7 GB; a few minutes on 2 cores."""
    import torch
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.modules.t3_config import T3Config
    from chatterbox.models.voice_encoder import VoiceEncoder

    if variant not in ("english", "multilingual", "turbo"):
        raise ValueError(f"no test checkpoint for {variant!r} (english, multilingual or turbo)")
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if variant == "turbo":
        _build_turbo(directory)
        _write_default_voice(directory, variant)
        return directory
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
            _tokenizer_json([*tags, *_CANGJIE_TOKENS], config.text_tokens_dict_size),
            encoding="utf-8",
        )
        _write_chinese_extras(directory)
    else:
        (directory / "tokenizer.json").write_text(
            _tokenizer_json([], config.text_tokens_dict_size), encoding="utf-8"
        )
    _write_default_voice(directory, variant)
    if multilingual:  # loading unpacked the segmenter: leave that to the service, as deployed
        shutil.rmtree(directory / PKUSEG_FOLDER / PKUSEG_MODEL)
    return directory


def _build_turbo(directory: Path) -> None:
    """Turbo: a GPT-2 medium T3 whose speech head is all bias (every speech token equally
    likely, the stop token about one draw in ten at the default temperature), the MeanFlow
    S3Gen, and a byte-level GPT-2 tokenizer without merges (every byte a token)."""
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.voice_encoder import VoiceEncoder
    from tokenizers.pre_tokenizers import ByteLevel

    _save_safetensors(VoiceEncoder().state_dict(), directory / "ve.safetensors")
    t3 = T3(_turbo_config())
    head = t3.speech_head
    head.weight.data.zero_()
    head.bias.data.zero_()
    head.bias.data[t3.hp.stop_speech_token] = _TURBO_STOP_BIAS
    head.bias.data[t3.hp.start_speech_token] = -_TURBO_STOP_BIAS * 20  # never sampled
    _save_safetensors(t3.state_dict(), directory / "t3_turbo_v1.safetensors")
    del t3
    _save_safetensors(S3Gen(meanflow=True).state_dict(), directory / "s3gen_meanflow.safetensors")
    alphabet = sorted(ByteLevel.alphabet())
    vocab = {char: index for index, char in enumerate([*alphabet, _GPT2_EOS])}
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", "utf-8")
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "bos_token": _GPT2_EOS,
        "eos_token": _GPT2_EOS,
        "unk_token": _GPT2_EOS,
        "model_max_length": 1024,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config), "utf-8")


def _turbo_config() -> Any:
    """The T3 hyper-parameters ChatterboxTurboTTS.from_local builds (inline, there)."""
    from chatterbox.models.t3.modules.t3_config import T3Config

    hp = T3Config(text_tokens_dict_size=50276)
    hp.llama_config_name = "GPT2_medium"
    hp.speech_tokens_dict_size = 6563
    hp.input_pos_emb = None
    hp.speech_cond_prompt_len = 375
    hp.use_perceiver_resampler = False
    hp.emotion_adv = False
    return hp


def _write_chinese_extras(directory: Path) -> None:
    """A Cangjie table and a zipped spacy_pkuseg model (trained here, by spacy_pkuseg's own
    trainer, on a few sentences) where the catalogue puts the real ones."""
    characters = sorted({c for line in _CHINESE_SENTENCES for c in line if c.strip()} - {"。"})
    table = [
        f"{char}\t{'abcdefghijklmnopqrstuvwxyz'[i % 26]}{'xyz'[i % 3]}"
        for i, char in enumerate(characters)
    ]
    (directory / CANGJIE_FILE).write_text(json.dumps(table, ensure_ascii=False), encoding="utf-8")
    home = directory / PKUSEG_FOLDER
    home.mkdir(exist_ok=True)
    # spacy_pkuseg reads PKUSEG_HOME at import: the later load must find the model here.
    os.environ["PKUSEG_HOME"] = str(home)
    import spacy_pkuseg

    with tempfile.TemporaryDirectory(prefix="pkuseg-train-") as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(_CHINESE_SENTENCES * 25) + "\n", encoding="utf-8")
        spacy_pkuseg.train(str(corpus), str(corpus), str(Path(tmp) / "model"), train_iter=2)
        with zipfile.ZipFile(home / f"{PKUSEG_MODEL}.zip", "w") as archive:
            for name in ("features.msgpack", "weights.npz"):
                archive.write(Path(tmp) / "model" / name, name)


def _write_default_voice(directory: Path, variant: str) -> None:
    """conds.pt: the model's own conditioning of a synthetic voice, loaded the production
    way (this also proves the checkpoint loads)."""
    import soundfile

    from genstack.chatterbox.engine import load_model

    model = load_model(variant, directory, "cpu")
    with tempfile.TemporaryDirectory(prefix="chatterbox-ref-") as tmp:
        path = Path(tmp) / "default.wav"
        seconds = 6.0 if variant == "turbo" else 1.5  # Turbo takes no reference under 5 s
        soundfile.write(path, _reference_wave(seconds, 140.0, 24_000), 24_000)
        model.prepare_conditionals(str(path))
    model.conds.save(directory / "conds.pt")


def cache_key(variant: str) -> str:
    """What a cached test checkpoint of ``variant`` is kept under: this builder's source and
    the chatterbox-tts version (either changing makes a new one)."""
    import hashlib
    from importlib.metadata import version

    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return f"{variant}-chatterbox{version('chatterbox-tts')}-{source}"
