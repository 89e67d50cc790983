"""Helpers of genstack.tts's tests: a tone server process, and decoding what it sends."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess, console_script


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
    with av.open(io.BytesIO(data)) as container:
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


def tone_wave(pitch_hz: float, seconds: float, rate: int = 24_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * pitch_hz * t) + 0.1 * np.sin(4 * np.pi * pitch_hz * t)).astype(
        np.float32
    )


@dataclass
class ToneServer:
    url: str
    process: ServiceProcess
    voices_dir: Path


def start_tone_server(
    log_dir: Path,
    voices_dir: Path,
    *,
    char_delay_ms: float = 0.0,
    load_delay_s: float = 0.0,
    env: dict[str, str] | None = None,
    wait: bool = True,
    name: str = "tone",
) -> ToneServer:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        console_script("genstack-tts-tone"),
        "serve",
        "--port",
        str(port),
        "--char-delay-ms",
        str(char_delay_ms),
        "--load-delay-s",
        str(load_delay_s),
    ]
    process = ServiceProcess(
        argv,
        env={"TTS_VOICES_DIR": str(voices_dir), "LOG_FORMAT": "text", **(env or {})},
        log_path=log_dir / f"{name}.log",
        ready_url=f"{url}/readyz",
    )
    if wait:
        try:
            process.wait_ready(timeout=60)
        except BaseException:
            process.stop()
            raise
    return ToneServer(url, process, voices_dir)
