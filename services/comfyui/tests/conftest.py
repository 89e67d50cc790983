from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from genstack.testing.comfyui_replay import ComfyReplay

# Exchanges recorded from a real ComfyUI (`genstack-comfyui record`), replayed by ComfyReplay.
RECORDINGS = Path(__file__).parent / "recordings"


@pytest.fixture
def replay(tmp_path: Path) -> Iterator[ComfyReplay]:
    stand_in = ComfyReplay(tmp_path / "outputs", RECORDINGS).start()
    try:
        yield stand_in
    finally:
        stand_in.stop()
