"""Encoding every format (whole and streamed), tempo, joins and decoding, checked by
decoding the bytes again with FFmpeg."""

from __future__ import annotations

import numpy as np
import pytest
from tts_helpers import tone_wave

from genstack.testing.audio import pcm_samples, probe
from genstack.tts.audio import (
    FORMATS,
    AudioDecodeError,
    AudioTooLongError,
    Encoder,
    SentenceJoiner,
    TempoStretcher,
    decode_audio,
    encode_all,
    wav_header,
)

RATE = 24_000
CONTAINERS = {
    "mp3": ("mp3", "mp3float"),
    "opus": ("ogg", "opus"),
    "aac": ("aac", "aac"),
    "flac": ("flac", "flac"),
    "wav": ("wav", "pcm_s16le"),
}


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * rate / samples.size)


@pytest.mark.parametrize("fmt", sorted(CONTAINERS))
@pytest.mark.parametrize("streaming", [True, False], ids=["streamed", "whole"])
def test_every_container_decodes_with_the_right_length_and_pitch(fmt: str, streaming: bool) -> None:
    wave = tone_wave(440, 2.0)
    encoder = Encoder(fmt, RATE, streaming=streaming)
    parts = [encoder.header()]
    parts += [encoder.encode(wave[i : i + 5000]) for i in range(0, wave.size, 5000)]
    parts.append(encoder.finish())
    result = probe(b"".join(parts))
    assert (result.container, result.codec) == CONTAINERS[fmt]
    # Codec priming/padding adds at most a frame or two.
    assert result.duration_s == pytest.approx(2.0, abs=0.1)
    middle = result.samples[result.rate // 2 : result.rate]
    assert dominant_hz(middle, result.rate) == pytest.approx(440, abs=15)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_streamed_bytes_leave_before_the_end(fmt: str) -> None:
    """A streaming encoder hands out audio while it encodes, not all at finish()."""
    wave = tone_wave(220, 3.0)
    encoder = Encoder(fmt, RATE, streaming=True)
    early = encoder.header() + b"".join(
        encoder.encode(wave[i : i + 6000]) for i in range(0, wave.size // 2, 6000)
    )
    rest = encoder.encode(wave[wave.size // 2 :]) + encoder.finish()
    assert len(early) > len(rest) / 3


def test_pcm_is_raw_16_bit_at_24khz_whatever_the_engine_rate() -> None:
    wave = tone_wave(300, 1.0, rate=16_000)
    data = encode_all(wave, "pcm", 16_000)
    samples = pcm_samples(data)
    assert samples.size == pytest.approx(24_000, abs=50)
    assert dominant_hz(samples, 24_000) == pytest.approx(300, abs=10)


def test_whole_wav_has_exact_sizes_and_streamed_wav_has_open_sizes() -> None:
    wave = tone_wave(300, 0.5)
    whole = encode_all(wave, "wav", RATE)
    assert whole[:4] == b"RIFF" and whole[8:16] == b"WAVEfmt "
    assert int.from_bytes(whole[4:8], "little") == len(whole) - 8
    assert int.from_bytes(whole[40:44], "little") == wave.size * 2
    assert wav_header(RATE, None)[40:44] == b"\xff\xff\xff\xff"


def test_opus_uses_a_rate_opus_supports() -> None:
    assert Encoder("opus", 22_050).output_rate == 24_000
    assert Encoder("opus", 44_100).output_rate == 48_000
    assert probe(encode_all(tone_wave(200, 1.0, 22_050), "opus", 22_050)).duration_s == (
        pytest.approx(1.0, abs=0.05)
    )


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown audio format"):
        Encoder("ogg-vorbis", RATE)
    assert set(FORMATS) == {"mp3", "opus", "aac", "flac", "wav", "pcm"}


@pytest.mark.parametrize("speed", [0.25, 0.5, 1.5, 4.0])
def test_tempo_changes_duration_but_not_pitch(speed: float) -> None:
    wave = tone_wave(330, 2.0)
    stretcher = TempoStretcher(RATE, speed)
    out = np.concatenate(
        [stretcher.process(wave[i : i + 4800]) for i in range(0, wave.size, 4800)]
        + [stretcher.flush()]
    )
    assert out.size / RATE == pytest.approx(2.0 / speed, rel=0.05)
    middle = out[out.size // 4 : out.size // 4 + RATE // 4]
    assert dominant_hz(middle, RATE) == pytest.approx(330, abs=20)


def test_tempo_outside_openai_range_is_refused() -> None:
    with pytest.raises(ValueError, match="speed"):
        TempoStretcher(RATE, 5.0)


def test_joiner_fades_sentence_edges_and_keeps_every_sample() -> None:
    joiner = SentenceJoiner(RATE)
    first = np.ones(2000, dtype=np.float32)
    out = np.concatenate(
        [joiner.push(first[:700]), joiner.push(first[700:]), joiner.end_sentence()]
    )
    assert out.size == 2000
    assert out[0] == 0.0 and out[-1] == 0.0  # no step at either edge: no click
    assert np.all(out[joiner.fade : -joiner.fade] == 1.0)  # the middle is untouched
    second = np.concatenate([joiner.push(first), joiner.end_sentence()])
    assert second[0] == 0.0  # the next sentence fades in again


@pytest.mark.parametrize("fmt", ["mp3", "flac", "wav", "opus", "aac"])
def test_decode_resamples_to_mono_at_the_asked_rate(fmt: str) -> None:
    data = encode_all(tone_wave(250, 1.5, 24_000), fmt, 24_000)
    samples = decode_audio(data, rate=16_000, max_seconds=10)
    assert samples.dtype == np.float32
    assert samples.size / 16_000 == pytest.approx(1.5, abs=0.08)
    assert dominant_hz(samples[4000:12000], 16_000) == pytest.approx(250, abs=10)


def test_decode_refuses_what_is_not_audio() -> None:
    for data in (b"", b"definitely not audio" * 100, b"RIFF\x00\x00\x00\x00WAVEjunk"):
        with pytest.raises(AudioDecodeError):
            decode_audio(data, rate=16_000, max_seconds=10)


def test_decode_stops_at_the_length_limit_or_truncates() -> None:
    data = encode_all(tone_wave(250, 3.0), "flac", RATE)
    with pytest.raises(AudioTooLongError, match="longer than 1 s"):
        decode_audio(data, rate=RATE, max_seconds=1)
    assert decode_audio(data, rate=RATE, max_seconds=1, truncate=True).size == RATE
