from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from comfyui_replay import ComfyReplay


@pytest.fixture
def replay(tmp_path: Path) -> Iterator[ComfyReplay]:
    stand_in = ComfyReplay(tmp_path / "outputs").start()
    try:
        yield stand_in
    finally:
        stand_in.stop()
