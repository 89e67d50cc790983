"""The XTTS engine in-process on a tiny checkpoint, loaded through Xtts.load_checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from xtts_helpers import MAX_SENTENCE_S, tone_wave

import genstack.xtts.checkpoint as checkpoint
from genstack.tts.audio import Resampler
from genstack.tts.engine import EngineError, SynthesisParams, TTSEngine
from genstack.xtts.checkpoint import CHECKPOINT_FILES, CheckpointError, ensure_checkpoint
from genstack.xtts.engine import LANGUAGE_NAMES, XttsEngine, XttsParams
from genstack.xtts.tiny import TINY_SPEAKERS


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path) -> XttsEngine:
    loaded = XttsEngine(tiny_checkpoint, device="cpu")
    loaded.load()
    return loaded


def speak(engine: XttsEngine, voice: Any, *, stream: bool, **params: Any) -> np.ndarray:
    chosen = SynthesisParams(language="en", **params)
    chunks = list(engine.synthesize("Hello there, world.", voice, chosen, stream=stream))
    assert all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    return np.concatenate(chunks)


def test_the_engine_meets_the_protocol_and_knows_its_model(engine: XttsEngine) -> None:
    assert isinstance(engine, TTSEngine)
    assert engine.sample_rate == 24_000
    assert list(engine.languages) == list(LANGUAGE_NAMES)
    assert list(engine.builtin_voices()) == list(TINY_SPEAKERS)
    assert engine.max_chunk_chars("en") == 250
    assert engine.max_chunk_chars("zh-cn") == 82


def test_seeded_synthesis_is_repeatable_and_streams_in_chunks(engine: XttsEngine) -> None:
    voice = engine.builtin_voice("Ana Florence")
    whole = speak(engine, voice, stream=False, seed=5)
    assert whole.size > 0
    assert whole.size / engine.sample_rate <= MAX_SENTENCE_S
    assert np.array_equal(whole, speak(engine, voice, stream=False, seed=5))
    chunks = list(
        engine.synthesize(
            "Hello there, world.",
            voice,
            SynthesisParams(language="en", seed=5, extra=XttsParams(stream_chunk_size=5)),
            stream=True,
        )
    )
    assert len(chunks) >= 2
    assert np.all(np.isfinite(np.concatenate(chunks)))


def test_voices_from_reference_audio_differ_from_each_other(engine: XttsEngine) -> None:
    low = engine.make_voice(tone_wave(120, 4.0, rate=22_050))
    high = engine.make_voice(tone_wave(300, 4.0, rate=22_050))
    assert low[0].shape == high[0].shape == (1, 32, 64)  # GPT conditioning latents
    assert low[1].shape == (1, 512, 1)  # speaker embedding
    assert not np.allclose(low[1].numpy(), high[1].numpy())
    a = speak(engine, low, stream=False, seed=1)
    b = speak(engine, high, stream=False, seed=1)
    assert a.size != b.size or not np.array_equal(a, b)


def test_too_short_reference_is_an_engine_error(engine: XttsEngine) -> None:
    with pytest.raises(EngineError, match="too short"):
        engine.make_voice(tone_wave(200, 0.1, rate=22_050))


@pytest.mark.parametrize("language", ["en", "de", "ru", "zh-cn", "ja", "ko", "ar", "hi"])
def test_every_script_goes_through_the_text_front_end(engine: XttsEngine, language: str) -> None:
    text = {"zh-cn": "你好世界", "ja": "こんにちは", "ko": "안녕하세요", "ru": "Привет мир"}
    sample = text.get(language, "Hello world")
    params = SynthesisParams(language=language, seed=1)
    voice = engine.builtin_voice("Ana Florence")
    audio = np.concatenate(list(engine.synthesize(sample, voice, params, stream=False)))
    assert audio.size > 0


def test_text_the_front_end_cannot_read_is_an_engine_error(engine: XttsEngine) -> None:
    voice = engine.builtin_voice("Ana Florence")
    with pytest.raises(EngineError, match="cannot read this text in 'hi'"):
        next(engine.synthesize("Room 42", voice, SynthesisParams(language="hi"), stream=True))


def test_speed_is_native(engine: XttsEngine) -> None:
    voice = engine.builtin_voice("Claribel Dervla")
    normal = speak(engine, voice, stream=False, seed=2)
    fast = speak(engine, voice, stream=False, seed=2, speed=2.0)
    assert fast.size < 0.7 * normal.size


def test_a_complete_folder_is_used_as_is_without_provisioning(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(model_dir: Path) -> None:
        raise AssertionError("a complete checkpoint must not be provisioned")

    monkeypatch.setattr(checkpoint, "provision_checkpoint", refuse)
    assert ensure_checkpoint(tiny_checkpoint) == tiny_checkpoint


def test_an_incomplete_folder_is_provisioned_or_fails_naming_what_is_missing(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tiny_checkpoint / "config.json", partial / "config.json")
    with pytest.raises(CheckpointError, match=r"model\.pth, vocab\.json, speakers_xtts\.pth"):
        XttsEngine(partial, device="cpu").load()

    fetched: list[Path] = []

    def provision(model_dir: Path) -> None:  # the hook genstack.provision fills
        fetched.append(model_dir)
        for name in CHECKPOINT_FILES:
            shutil.copy(tiny_checkpoint / name, model_dir / name)

    monkeypatch.setattr(checkpoint, "provision_checkpoint", provision)
    engine = XttsEngine(partial, device="cpu")
    engine.load()
    assert fetched == [partial]
    assert list(engine.builtin_voices()) == list(TINY_SPEAKERS)


def test_reference_audio_at_another_rate_is_resampled_first(engine: XttsEngine) -> None:
    wave = tone_wave(200, 3.0, rate=48_000)
    resampled = Resampler(48_000, engine.reference_sample_rate).process(wave)
    latent, _ = engine.make_voice(resampled)
    assert latent.shape == (1, 32, 64)
