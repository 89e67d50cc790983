"""Helpers of genstack.chatterbox's tests: a server process on a test checkpoint, audio."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from genstack.testing.chatterbox import cached_chatterbox_checkpoint
from genstack.testing.ports import free_port
from genstack.testing.process import ServiceProcess, console_script

# The test checkpoint stops after 12 speech tokens: about 0.5 s of audio a sentence.
MAX_SENTENCE_S = 0.6
TIMEOUT = 300.0  # a generation takes 10-30 s on 2 busy cores


def tone_wave(pitch_hz: float, seconds: float, rate: int = 24_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * pitch_hz * t) + 0.1 * np.sin(6 * np.pi * pitch_hz * t)
    return (wave * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@dataclass
class ChatterboxServer:
    url: str
    process: ServiceProcess
    voices_dir: Path
    variant: str
    model_dir: Path

    def post(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]


def start_chatterbox_server(
    root: Path,
    model_dir: Path,
    *,
    variant: str = "english",
    env: dict[str, str] | None = None,
    name: str = "chatterbox",
    wait: bool = True,
) -> ChatterboxServer:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    voices = root / "voices"
    process = ServiceProcess(
        [console_script("genstack-chatterbox"), "serve"],
        env={
            "CHATTERBOX_HOST": "127.0.0.1",
            "CHATTERBOX_PORT": str(port),
            "CHATTERBOX_MODEL_DIR": str(model_dir),
            "CHATTERBOX_MODEL": variant,
            "CHATTERBOX_DEVICE": "cpu",
            "TTS_VOICES_DIR": str(voices),
            "TTS_MAX_VOICE_UPLOAD_MB": "1",
            "TTS_QUEUE_TIMEOUT_S": "600",
            "OUTPUT_DIR": str(root / "outputs"),
            "LOG_FORMAT": "text",
            **(env or {}),
        },
        log_path=root / "logs" / f"{name}.log",
        ready_url=f"{url}/readyz",
    )
    if wait:
        try:
            process.wait_ready(timeout=600)
        except BaseException:
            process.stop()
            raise
    return ChatterboxServer(url, process, voices, variant, model_dir)


class Servers:
    """At most one running server; asking for another variant stops the current one."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.current: ChatterboxServer | None = None

    def get(self, variant: str) -> ChatterboxServer:
        if self.current is not None and self.current.variant == variant:
            return self.current
        self.stop()
        command = Path(console_script("genstack-chatterbox"))
        checkpoint = cached_chatterbox_checkpoint(variant, command=command)
        root = self.factory.mktemp(f"chatterbox-{variant}")
        if variant == "turbo":  # where provisioning puts it: the model folder's turbo/
            (root / "models").mkdir()
            (root / "models" / "turbo").symlink_to(checkpoint, target_is_directory=True)
            checkpoint = root / "models"
        self.current = start_chatterbox_server(root, checkpoint, variant=variant)
        return self.current

    def stop(self) -> None:
        if self.current is not None:
            self.current.process.stop()
            self.current = None
