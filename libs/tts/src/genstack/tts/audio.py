"""Audio encoding and decoding with FFmpeg's libraries (PyAV wheels ship them).

Every response format is a real, playable container also when streamed: each chunk of
samples is encoded as it arrives and the container's bytes are handed out as soon as the
muxer writes them (``flush_packets``), so a player can start on the first bytes:

- mp3: MPEG-1/2 layer III frames (libmp3lame), playable from any frame boundary;
- opus: Ogg Opus (libopus), short Ogg pages so audio leaves the server early;
- aac: AAC in ADTS frames, the streamable AAC container;
- flac: native FLAC stream (the total length in STREAMINFO is left unknown when streamed);
- wav: 16-bit PCM RIFF; streamed with the "unknown length" sizes browsers and FFmpeg accept;
- pcm: raw signed 16-bit little-endian mono at 24 kHz (OpenAI's pcm), no header.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, BinaryIO

import av
import numpy as np

from genstack.tts.engine import Samples

PCM_RATE = 24_000  # OpenAI's pcm format is 24 kHz
FADE_S = 0.005  # fade at each sentence edge so joins do not click


@dataclass(frozen=True)
class AudioFormat:
    name: str
    media_type: str
    extension: str


FORMATS: dict[str, AudioFormat] = {
    "mp3": AudioFormat("mp3", "audio/mpeg", "mp3"),
    "opus": AudioFormat("opus", "audio/ogg", "opus"),
    "aac": AudioFormat("aac", "audio/aac", "aac"),
    "flac": AudioFormat("flac", "audio/flac", "flac"),
    "wav": AudioFormat("wav", "audio/wav", "wav"),
    "pcm": AudioFormat("pcm", "audio/pcm", "pcm"),
}

# format -> (muxer, encoder, muxer options)
_PYAV: dict[str, tuple[str, str, dict[str, str]]] = {
    "mp3": ("mp3", "libmp3lame", {"flush_packets": "1", "write_xing": "0"}),
    # 20 ms Ogg pages: the muxer would otherwise hold up to a second of audio per page.
    "opus": ("ogg", "libopus", {"flush_packets": "1", "page_duration": "20000"}),
    "aac": ("adts", "aac", {"flush_packets": "1"}),
    "flac": ("flac", "flac", {"flush_packets": "1"}),
}
_OPUS_RATES = (48_000, 24_000, 16_000, 12_000, 8_000)
_MP3_RATES = (48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000)


class AudioDecodeError(ValueError):
    """The bytes are not audio FFmpeg can decode."""


class AudioTooLongError(ValueError):
    """The audio is longer than the limit."""


class _Sink:
    """A write-only, non-seekable file for the muxer: it collects what is written until
    taken. Non-seekable on purpose: a muxer must not go back and patch earlier bytes,
    which a streamed response has already sent."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        return len(chunk)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _to_int16(samples: Samples) -> bytes:
    clipped = np.clip(samples, -1.0, 1.0)
    return (clipped * 32767.0).astype("<i2").tobytes()


def _frame(samples: Samples, rate: int, pts: int | None) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
    )
    frame.sample_rate = rate
    frame.pts = pts
    return frame


def _frames_to_samples(frames: Iterable[av.AudioFrame]) -> Samples:
    arrays = [f.to_ndarray().reshape(-1).astype(np.float32, copy=False) for f in frames]
    if not arrays:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(arrays)


class Resampler:
    """Mono float32 sample-rate conversion (FFmpeg's swresample), chunk by chunk."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        self.rate_in = rate_in
        self.rate_out = rate_out
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=rate_out)
        self._pts = 0

    def process(self, samples: Samples) -> Samples:
        if self.rate_in == self.rate_out or samples.size == 0:
            return samples
        frame = _frame(samples, self.rate_in, self._pts)
        self._pts += samples.size
        return _frames_to_samples(self._resampler.resample(frame))

    def flush(self) -> Samples:
        if self.rate_in == self.rate_out:
            return np.zeros(0, dtype=np.float32)
        return _frames_to_samples(self._resampler.resample(None))


class Encoder:
    """Encodes mono float32 chunks into one container of ``fmt``, incrementally.

    ``encode`` returns the container bytes that chunk completed (possibly none yet);
    ``finish`` returns the rest. ``streaming``: the total length is unknown up front (wav
    gets the "unknown length" header)."""

    def __init__(self, fmt: str, sample_rate: int, *, streaming: bool = True) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown audio format {fmt!r}")
        self.format = FORMATS[fmt]
        self.sample_rate = sample_rate
        self.streaming = streaming
        self._finished = False
        self._container: Any = None
        self._stream: Any = None
        self._pts = 0
        self._pending: list[bytes] = []  # wav written whole when not streaming
        self._resampler: Resampler | None = None
        self._sink = _Sink()
        if fmt == "pcm":
            self.output_rate = PCM_RATE
        elif fmt == "opus":
            self.output_rate = min(
                _OPUS_RATES, key=lambda r: (r < sample_rate, abs(r - sample_rate))
            )
        elif fmt == "mp3":
            self.output_rate = min(_MP3_RATES, key=lambda r: abs(r - sample_rate))
        else:
            self.output_rate = sample_rate
        if self.output_rate != sample_rate:
            self._resampler = Resampler(sample_rate, self.output_rate)
        # Whole files go to a seekable buffer, so the muxer can finish its header (FLAC's
        # total length and checksum, MP3's Xing frame for exact duration and seeking).
        self._whole = None if streaming else io.BytesIO()
        if fmt in _PYAV:
            muxer, codec, options = _PYAV[fmt]
            if not streaming:
                options = {**options, "write_xing": "1"} if fmt == "mp3" else options
            target = self._sink if self._whole is None else self._whole
            self._container = av.open(target, mode="w", format=muxer, options=options)
            stream = self._container.add_stream(codec, rate=self.output_rate, layout="mono")
            if fmt == "mp3":
                stream.codec_context.bit_rate = 128_000
            elif fmt == "aac":
                stream.codec_context.bit_rate = 96_000
            elif fmt == "opus":
                stream.codec_context.bit_rate = 48_000
            self._stream = stream

    def header(self) -> bytes:
        """Bytes that can be sent before any audio (the streamed wav header)."""
        if self.format.name == "wav" and self.streaming:
            return wav_header(self.output_rate, None)
        return b""

    def encode(self, samples: Samples) -> bytes:
        if self._finished:
            raise RuntimeError("encoder already finished")
        if self._resampler is not None:
            samples = self._resampler.process(samples)
        return self._encode(samples)

    def finish(self) -> bytes:
        if self._finished:
            return b""
        tail = b""
        if self._resampler is not None:
            tail = self._encode(self._resampler.flush())
        self._finished = True
        name = self.format.name
        if name == "pcm":
            return tail
        if name == "wav":
            if self.streaming:
                return tail
            data = b"".join(self._pending) + tail
            self._pending.clear()
            return wav_header(self.output_rate, len(data)) + data
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        if self._whole is not None:
            return self._whole.getvalue()
        return tail + self._sink.take()

    def _encode(self, samples: Samples) -> bytes:
        if samples.size == 0:
            return b""
        name = self.format.name
        if name == "pcm":
            return _to_int16(samples)
        if name == "wav":
            data = _to_int16(samples)
            if self.streaming:
                return data
            self._pending.append(data)
            return b""
        for packet in self._stream.encode(_frame(samples, self.output_rate, self._pts)):
            self._container.mux(packet)
        self._pts += samples.size
        return self._sink.take()  # nothing for a whole file: it is all returned by finish

    def close(self) -> None:
        """Release FFmpeg's resources without finishing (an abandoned stream)."""
        if self._container is not None and not self._finished:
            self._finished = True
            with contextlib.suppress(av.FFmpegError, OSError, ValueError):
                self._container.close()


def wav_header(rate: int, data_bytes: int | None) -> bytes:
    """RIFF/WAVE header of 16-bit mono PCM. ``data_bytes`` None: a streamed file of unknown
    length (sizes 0xFFFFFFFF, which players read as "until the end")."""
    block_align = 2
    if data_bytes is None:
        riff_size = data_size = 0xFFFFFFFF
    else:
        data_size = data_bytes
        riff_size = 36 + data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * block_align, block_align, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )


def encode_all(samples: Samples, fmt: str, sample_rate: int) -> bytes:
    """A whole file of ``fmt`` (exact lengths in its header where the format has them)."""
    encoder = Encoder(fmt, sample_rate, streaming=False)
    return encoder.encode(samples) + encoder.finish()


class TempoStretcher:
    """Changes speed without changing pitch (FFmpeg's atempo), chunk by chunk.

    atempo takes 0.5..2.0 per instance, so 0.25 and 4.0 chain two."""

    def __init__(self, sample_rate: int, speed: float) -> None:
        if not 0.25 <= speed <= 4.0:
            raise ValueError("speed must be within 0.25..4.0")
        self.sample_rate = sample_rate
        self.speed = speed
        self._pts = 0
        self._graph = av.filter.Graph()
        source = self._graph.add_abuffer(
            format="flt", sample_rate=sample_rate, layout="mono", time_base=Fraction(1, sample_rate)
        )
        factors = []
        remaining = speed
        while remaining > 2.0:
            factors.append(2.0)
            remaining /= 2.0
        while remaining < 0.5:
            factors.append(0.5)
            remaining /= 0.5
        factors.append(remaining)
        nodes = [source]
        for factor in factors:
            nodes.append(self._graph.add("atempo", f"{factor:.6f}"))
        nodes.append(self._graph.add("abuffersink"))
        for left, right in itertools.pairwise(nodes):
            left.link_to(right)
        self._graph.configure()

    def process(self, samples: Samples) -> Samples:
        if samples.size == 0:
            return samples
        frame = _frame(samples, self.sample_rate, self._pts)
        frame.time_base = Fraction(1, self.sample_rate)
        self._pts += samples.size
        self._graph.push(frame)
        return self._drain()

    def flush(self) -> Samples:
        self._graph.push(None)
        return self._drain()

    def _drain(self) -> Samples:
        frames: list[av.AudioFrame] = []
        while True:
            try:
                frame = self._graph.pull()
                if isinstance(frame, av.AudioFrame):
                    frames.append(frame)
            except (av.BlockingIOError, av.EOFError):
                break
        return _frames_to_samples(frames)


class SentenceJoiner:
    """Fades each sentence in and out over a few milliseconds so that sentences made
    separately join without clicks. It holds back only the fade's length of audio."""

    def __init__(self, sample_rate: int) -> None:
        self.fade = max(1, int(sample_rate * FADE_S))
        self._tail = np.zeros(0, dtype=np.float32)
        self._at_start = True
        self._ramp = np.linspace(0.0, 1.0, self.fade, dtype=np.float32)

    def push(self, samples: Samples) -> Samples:
        data = np.concatenate([self._tail, samples]) if self._tail.size else samples
        if self._at_start and data.size:
            data = data.astype(np.float32, copy=True)
            n = min(self.fade, data.size)
            data[:n] *= self._ramp[:n]
            self._at_start = False
        if data.size <= self.fade:
            self._tail = data
            return np.zeros(0, dtype=np.float32)
        self._tail = data[-self.fade :]
        return data[: -self.fade]

    def end_sentence(self) -> Samples:
        tail = self._tail.astype(np.float32, copy=True)
        if tail.size:
            tail *= self._ramp[::-1][-tail.size :]
        self._tail = np.zeros(0, dtype=np.float32)
        self._at_start = True
        return tail


def _decode_stream(container: Any, rate: int, limit: int) -> tuple[list[Samples], bool] | None:
    """Mono float32 parts of the first audio stream (None: there is none), and whether
    decoding stopped early because more than ``limit`` samples came out."""
    streams = container.streams.audio
    if not streams:
        return None
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    parts: list[Samples] = []
    total = 0
    for frame in container.decode(streams[0]):
        for out in resampler.resample(frame):
            array = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            parts.append(array)
            total += array.size
        if total > limit:
            return parts, True
    parts.extend(
        f.to_ndarray().reshape(-1).astype(np.float32, copy=False) for f in resampler.resample(None)
    )
    return parts, False


def decode_audio(
    source: bytes | BinaryIO, *, rate: int, max_seconds: float, truncate: bool = False
) -> Samples:
    """Decode any audio FFmpeg reads to mono float32 at ``rate``.

    Stops as soon as more than ``max_seconds`` is decoded, so a small file that expands to
    hours cannot tie the server up: AudioTooLongError, or with ``truncate`` the first
    ``max_seconds``."""
    file = io.BytesIO(source) if isinstance(source, bytes) else source
    limit = int(max_seconds * rate)
    try:
        with av.open(file, mode="r") as container:
            decoded = _decode_stream(container, rate, limit)
    except (av.FFmpegError, ValueError, IndexError, OSError) as exc:
        raise AudioDecodeError(f"not decodable audio: {exc}") from exc
    if decoded is None:
        raise AudioDecodeError("the file has no audio stream")
    parts, _ = decoded
    samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    if samples.size > limit:
        if not truncate:
            raise AudioTooLongError(f"the audio is longer than {max_seconds:g} s")
        samples = samples[:limit]
    if not np.all(np.isfinite(samples)):
        raise AudioDecodeError("the audio contains invalid samples")
    return samples
