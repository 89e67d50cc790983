"""Decoding what a speech server sends, for assertions: FFmpeg (PyAV) and SSE bodies.

av and numpy are imported by this module only, so environments without them (core, uploader)
never load it."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import av
import numpy as np


@dataclass
class Probe:
    container: str
    codec: str
    rate: int
    samples: np.ndarray

    @property
    def duration_s(self) -> float:
        return self.samples.size / self.rate


def probe(data: bytes) -> Probe:
    """Decode a whole file with FFmpeg (PyAV): container, codec, rate and mono samples."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray() for f in container.decode(stream)]
        rate = stream.codec_context.sample_rate
        name, codec = container.format.name, stream.codec_context.name
    mono = []
    for frame in frames:
        scaled = frame / 32768.0 if frame.dtype == np.int16 else frame
        mono.append(scaled.reshape(scaled.shape[0], -1).mean(axis=0) if scaled.ndim > 1 else scaled)
    samples = np.concatenate(mono).astype(np.float32) if mono else np.zeros(0, np.float32)
    return Probe(name, codec, rate, samples)


def pcm_samples(data: bytes) -> np.ndarray:
    """Raw 16-bit little-endian PCM as float32 in [-1, 1)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def sse_events(body: bytes) -> list[dict[str, object]]:
    """The JSON events of a text/event-stream body; fails on any malformed event."""
    events = []
    for block in body.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert all(line.startswith("data: ") for line in lines), block
        events.append(json.loads("".join(line[len("data: ") :] for line in lines)))
    return events
