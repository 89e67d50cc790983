"""One Chatterbox server at a time for the whole session: a model takes about 7 GB and a
minute to load, so the English one starts once and serves every test that needs it, and is
stopped before the multilingual one (test_zz_multilingual.py, last) starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chatterbox_helpers import ChatterboxServer, Servers

from genstack.testing.chatterbox import cached_chatterbox_checkpoint
from genstack.testing.process import console_script


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    running = Servers(tmp_path_factory)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def english_checkpoint() -> Path:
    return cached_chatterbox_checkpoint(
        "english", command=Path(console_script("genstack-chatterbox"))
    )


@pytest.fixture(scope="session")
def chatterbox(servers: Servers) -> ChatterboxServer:
    """The English model's server (started once, kept for the session)."""
    return servers.get("english")
