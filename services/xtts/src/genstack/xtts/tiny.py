"""A tiny, randomly initialised XTTS v2 checkpoint in the real on-disk layout.

No model hub is reachable from CI, so tests and benchmarks build one of these and load it
through the production path (``Xtts.load_checkpoint``). It has every file a real checkpoint
has (config.json, model.pth, vocab.json, speakers_xtts.pth) and the real architecture with a
shrunken GPT (2 layers, 64 channels); the HiFi-GAN decoder and the speaker encoder keep their
real size. It speaks noise, deterministically for a given seed.

``genstack-xtts make-tiny-checkpoint DIR`` writes one (used by the image smoke test too).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from genstack.core.contracts.xtts import LANGUAGES  # config.languages and the language tokens

# The studio speakers of the real speakers_xtts.pth are named like this; two are enough.
TINY_SPEAKERS = ("Claribel Dervla", "Ana Florence")
GPT_WIDTH = 64


def _vocab_json() -> str:
    """A BPE tokenizer (the `tokenizers` json format) with XTTS's special tokens, one token
    per language, and one token per character of Latin, Cyrillic and the punctuation the
    text cleaners leave; no merges, so text tokenises per character."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    specials = ["[STOP]", "[UNK]", "[SPACE]", "[START]", *(f"[{lang}]" for lang in LANGUAGES)]
    chars: list[str] = []
    for lo, hi in ((0x21, 0x7E), (0xA1, 0x17F), (0x400, 0x4FF)):
        chars.extend(chr(c) for c in range(lo, hi + 1))
    vocab = {token: index for index, token in enumerate([*specials, *chars])}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))  # noqa: S106
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(specials)
    return str(tokenizer.to_str(pretty=False))


def _config(*, max_audio_tokens: int) -> dict[str, Any]:
    from TTS.tts.configs.xtts_config import XttsArgs, XttsAudioConfig, XttsConfig

    args = XttsArgs(
        gpt_layers=2,
        gpt_n_model_channels=GPT_WIDTH,
        gpt_n_heads=4,
        decoder_input_dim=GPT_WIDTH,
        gpt_max_audio_tokens=max_audio_tokens,
        gpt_max_text_tokens=402,
        gpt_max_prompt_tokens=70,
        gpt_num_audio_tokens=1026,
        gpt_start_audio_token=1024,
        gpt_stop_audio_token=1025,
        gpt_use_perceiver_resampler=True,
        gpt_use_masking_gt_prompt_approach=True,
        d_vector_dim=512,
    )
    config = XttsConfig(model_args=args, audio=XttsAudioConfig(), languages=list(LANGUAGES))
    return dict(config.to_dict())


def _reference_wave(seconds: float, pitch_hz: float, sample_rate: int) -> list[float]:
    """A voiced, vowel-like test signal (harmonics with vibrato) to compute speaker latents."""
    samples = []
    for n in range(int(seconds * sample_rate)):
        t = n / sample_rate
        f = pitch_hz * (1 + 0.03 * math.sin(2 * math.pi * 5 * t))
        value = sum(math.sin(2 * math.pi * f * k * t) / k for k in range(1, 6))
        samples.append(0.2 * value)
    return samples


def build_tiny_checkpoint(directory: Path, *, seed: int = 1234, max_audio_tokens: int = 24) -> Path:
    """Write a complete tiny XTTS v2 checkpoint into ``directory`` and return it.

    ``max_audio_tokens`` bounds every sentence's length (random weights rarely stop on
    their own): 24 tokens are about 1.1 s of audio."""
    import torch
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(_vocab_json(), encoding="utf-8")
    config_dict = _config(max_audio_tokens=max_audio_tokens)
    (directory / "config.json").write_text(json.dumps(config_dict, indent=2), encoding="utf-8")

    torch.manual_seed(seed)
    config = XttsConfig()
    config.from_dict(config_dict)
    model = Xtts(config)
    # The GPT is only built once the tokenizer (and so the text vocabulary) is known.
    model.tokenizer = VoiceBpeTokenizer(vocab_file=str(directory / "vocab.json"))
    model.init_models()
    # Real checkpoints store mel normalisation statistics; ones keep the features unscaled.
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    torch.save({"model": state}, directory / "model.pth")

    # Studio speakers: latents the model itself computes from distinct reference signals.
    model.eval()
    speakers: dict[str, dict[str, torch.Tensor]] = {}
    for index, name in enumerate(TINY_SPEAKERS):
        wave = torch.tensor([_reference_wave(3.0, 110.0 + 70.0 * index, 22050)])
        latent = model.get_gpt_cond_latents(wave, 22050, length=6, chunk_length=6)
        embedding = model.get_speaker_embedding(wave, 22050)
        speakers[name] = {
            "gpt_cond_latent": latent.detach().cpu(),
            "speaker_embedding": embedding.detach().cpu(),
        }
    torch.save(speakers, directory / "speakers_xtts.pth")
    return directory
