from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tts_helpers import ToneServer, start_tone_server


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToneServer]:
    """One tone server for a module's read-only tests (no delay, default limits)."""
    root = tmp_path_factory.mktemp("tone")
    server = start_tone_server(root / "logs", root / "voices")
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture
def start_tone(tmp_path: Path) -> Iterator[Callable[..., ToneServer]]:
    """Start a tone server of this test's own (options of start_tone_server)."""
    started: list[ToneServer] = []

    def start(**options: Any) -> ToneServer:
        options.setdefault("name", f"tone-{len(started) + 1}")
        server = start_tone_server(tmp_path / "logs", tmp_path / "voices", **options)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.process.stop()
