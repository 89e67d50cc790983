"""Helpers of genstack.tts's tests: a tone server process, and decoding what it sends."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess, console_script


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
