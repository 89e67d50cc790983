from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from xtts_helpers import XttsServer, start_xtts_server

from genstack.xtts.tiny import build_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random XTTS v2 checkpoint in the real layout, built once per session."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "xtts")


@pytest.fixture(scope="session")
def xtts(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[XttsServer]:
    """One `genstack-xtts serve` process on the tiny checkpoint for the whole session."""
    server = start_xtts_server(tmp_path_factory.mktemp("xtts-server"), tiny_checkpoint)
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture
def start_xtts(tmp_path: Path, tiny_checkpoint: Path) -> Iterator[Callable[..., XttsServer]]:
    started: list[XttsServer] = []

    def start(**options: Any) -> XttsServer:
        options.setdefault("name", f"xtts-{len(started) + 1}")
        server = start_xtts_server(tmp_path, tiny_checkpoint, **options)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.process.stop()
