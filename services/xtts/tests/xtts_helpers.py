"""Helpers of genstack.xtts's tests: an XTTS server process on a tiny checkpoint, decoding."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess, console_script

# The tiny model stops each sentence after at most ~1 s of audio (max_audio_tokens=24).
MAX_SENTENCE_S = 1.1


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
        mono.append(scaled.reshape(scaled.shape[0], -1).mean(axis=0))
    samples = np.concatenate(mono).astype(np.float32) if mono else np.zeros(0, np.float32)
    return Probe(name, codec, rate, samples)


def sse_events(body: bytes) -> list[dict[str, object]]:
    events = []
    for block in body.decode().split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            events.append(json.loads(block[len("data: ") :]))
    return events


def tone_wave(pitch_hz: float, seconds: float, rate: int = 24_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * pitch_hz * t) + 0.1 * np.sin(6 * np.pi * pitch_hz * t)
    return (wave * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@dataclass
class XttsServer:
    url: str
    process: ServiceProcess
    voices_dir: Path
    output_dir: Path


def start_xtts_server(
    root: Path,
    model_dir: Path,
    *,
    env: dict[str, str] | None = None,
    name: str = "xtts",
    wait: bool = True,
) -> XttsServer:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    voices, outputs = root / "voices", root / "outputs"
    process = ServiceProcess(
        [console_script("genstack-xtts"), "serve"],
        env={
            "XTTS_HOST": "127.0.0.1",
            "XTTS_PORT": str(port),
            "XTTS_MODEL_DIR": str(model_dir),
            "XTTS_DEVICE": "cpu",
            "TTS_VOICES_DIR": str(voices),
            "OUTPUT_DIR": str(outputs),
            "LOG_FORMAT": "text",
            **(env or {}),
        },
        log_path=root / "logs" / f"{name}.log",
        ready_url=f"{url}/readyz",
    )
    if wait:
        try:
            process.wait_ready(timeout=180)
        except BaseException:
            process.stop()
            raise
    return XttsServer(url, process, voices, outputs)
