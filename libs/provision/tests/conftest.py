"""Fixtures for genstack.provision's tests: loopback file servers standing in for the hubs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from genstack.provision.gpu import GpuInfo, GpuProfile, resolve_profile
from genstack.testing.file_server import FileServer


@pytest.fixture
def hub() -> Iterator[FileServer]:
    """The "hub" (Hugging Face / CivitAI API host) on 127.0.0.1."""
    server = FileServer(host="127.0.0.1").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cdn() -> Iterator[FileServer]:
    """Presigned storage the hub redirects to: another host (127.0.0.2, also loopback)."""
    server = FileServer(host="127.0.0.2").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def models_root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    return root


@pytest.fixture
def env(hub: FileServer) -> dict[str, str]:
    """Provisioning settings for tests: the loopback hub, quick retries, log progress."""
    return {
        "HF_ENDPOINT": hub.url,
        "CIVITAI_ENDPOINT": hub.url,
        "PROVISION_RETRY_BASE_S": "0.05",
        "PROVISION_STALL_TIMEOUT_S": "2",
        "PROVISION_CONNECTIONS": "4",
        "PROVISION_PROGRESS": "off",
        "PROVISION_MIN_FREE_GB": "0",
    }


@pytest.fixture
def gpu24() -> GpuProfile:
    return resolve_profile({}, assume_vram_gb=24)


@pytest.fixture
def no_gpu() -> GpuProfile:
    return resolve_profile({}, GpuInfo(error="test: no GPU"))
