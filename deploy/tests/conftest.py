from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from genstack.deploy.services import Layout
from genstack.provision.gpu import GpuDevice, GpuInfo

NO_GPU = GpuInfo(error="no GPU in this test")


def gpu(index: int, gb: int = 24) -> GpuDevice:
    return GpuDevice(
        index=index,
        name=f"Test GPU {index}",
        uuid=f"GPU-{index:08d}-test",
        memory_total_bytes=gb * 10**9,
        memory_free_bytes=gb * 10**9,
        compute_capability="8.9",
    )


def install(venvs: Path, *packages: str) -> None:
    """The console scripts a venv of each package would have (empty files: plans only look)."""
    for package in packages:
        script = venvs / package / "bin" / f"genstack-{package}"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text("")


MakeLayout = Callable[..., Layout]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout with every service folder, and its venvs installed."""
    root = tmp_path / "checkout"
    for package in ("gateway", "uploader", "xtts", "chatterbox", "comfyui"):
        (root / "services" / package).mkdir(parents=True)
    install(root / ".venvs", "gateway", "uploader", "xtts", "chatterbox", "comfyui", "deploy")
    return root


@pytest.fixture
def layout(checkout: Path, tmp_path: Path) -> MakeLayout:
    def make(**changes: object) -> Layout:
        values: dict[str, object] = {
            "kind": "local",
            "venvs": checkout / ".venvs",
            "data_dir": tmp_path / "data",
            "models_dir": tmp_path / "data" / "models",
            "checkout": checkout,
        }
        values.update(changes)
        return Layout(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def comfyui_checkout(tmp_path: Path) -> Path:
    """A folder that looks like a ComfyUI checkout to the plan (main.py)."""
    root = tmp_path / "ComfyUI"
    root.mkdir()
    (root / "main.py").write_text("")
    return root


@pytest.fixture
def python_without_torch() -> str:
    return sys.executable
