"""Helpers of genstack.xtts's tests: an XTTS server process on a tiny checkpoint, decoding."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess, console_script

# The tiny model stops each sentence after at most ~1 s of audio (max_audio_tokens=24).
MAX_SENTENCE_S = 1.1


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
