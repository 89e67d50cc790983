"""genstack.testing.checkpoints: the cache (keys, one build per key, concurrent sessions wait
for one build), the build script's failures, and, with a real ComfyUI checkout
(COMFYUI_DIR, COMFYUI_PYTHON), the layouts ComfyUI detects and the SD1.5 file itself."""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
import time
from pathlib import Path

import pytest

from genstack.testing.checkpoints import (
    CheckpointBuildError,
    build_checkpoint,
    cache_root,
    cached_checkpoint,
    check_checkpoint_layout,
    comfyui_version,
)

needs_comfyui = pytest.mark.skipif(
    not (os.environ.get("COMFYUI_DIR") and os.environ.get("COMFYUI_PYTHON")),
    reason="COMFYUI_DIR and COMFYUI_PYTHON are not set",
)


def fake_checkout(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "comfyui_version.py").write_text(f'__version__ = "{version}"\n')
    return folder


class CountingBuilder:
    """Stands in for the 2 GB build: writes a small file, counts calls, can be slow."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[tuple[str, Path]] = []
        self.delay_s = delay_s
        self.lock = threading.Lock()

    def __call__(self, arch: str, dest: Path, **options: object) -> Path:
        with self.lock:
            self.calls.append((arch, dest))
        time.sleep(self.delay_s)
        dest.write_text(json.dumps({"arch": arch, **{k: str(v) for k, v in options.items()}}))
        return dest


def test_a_checkpoint_is_built_once_per_version_dtype_and_seed(tmp_path: Path) -> None:
    build = CountingBuilder()
    old = fake_checkout(tmp_path / "old", "0.3.64")
    new = fake_checkout(tmp_path / "new", "0.3.65")
    python = Path(sys.executable)

    def get(checkout: Path, dtype: str = "fp16", seed: int = 0) -> Path:
        return cached_checkpoint(
            "sd15",
            comfyui_dir=checkout,
            python=python,
            dtype=dtype,
            seed=seed,
            cache=tmp_path / "cache",
            build=build,
        )

    first = get(old)
    assert get(old) == first
    assert len(build.calls) == 1
    assert json.loads(first.read_text())["dtype"] == "fp16"
    others = {get(new), get(old, dtype="fp32"), get(old, seed=1)}
    assert len(others | {first}) == 4
    assert len(build.calls) == 4
    assert first.parent == tmp_path / "cache" / "checkpoints"
    assert "0.3.64" in first.name and "0.3.65" in get(new).name


def test_concurrent_sessions_wait_for_one_build(tmp_path: Path) -> None:
    build = CountingBuilder(delay_s=0.5)
    checkout = fake_checkout(tmp_path / "comfyui", "0.3.64")
    paths: list[Path] = []

    def session() -> None:
        paths.append(
            cached_checkpoint(
                "sd15",
                comfyui_dir=checkout,
                python=Path(sys.executable),
                cache=tmp_path / "cache",
                build=build,
            )
        )

    threads = [threading.Thread(target=session) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(paths) == 3 and len(set(paths)) == 1
    assert len(build.calls) == 1


def test_the_cache_folder_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENSTACK_TEST_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("GENSTACK_TEST_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "genstack-testing"


def test_a_checkout_without_a_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "comfyui_version.py").write_text("VERSION = 3\n")
    with pytest.raises(CheckpointBuildError, match="no __version__"):
        comfyui_version(tmp_path)
    with pytest.raises(FileNotFoundError):
        comfyui_version(tmp_path / "missing")


def test_a_failed_build_says_why_and_leaves_no_file(tmp_path: Path) -> None:
    # This interpreter runs the script far enough to find no ComfyUI in the folder given.
    dest = tmp_path / "out" / "sd15.safetensors"
    with pytest.raises(CheckpointBuildError, match="ModuleNotFoundError") as caught:
        build_checkpoint(
            "sd15", dest, comfyui_dir=tmp_path / "no-comfyui", python=Path(sys.executable)
        )
    assert "exited 1" in str(caught.value)
    assert list(dest.parent.iterdir()) == []


def test_unknown_architectures_and_dtypes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="arch 'sd3'"):
        check_checkpoint_layout("sd3", comfyui_dir=tmp_path, python=Path(sys.executable))
    with pytest.raises(ValueError, match="dtype 'fp8'"):
        build_checkpoint(
            "sd15", tmp_path / "x", comfyui_dir=tmp_path, python=Path(sys.executable), dtype="fp8"
        )


@pytest.mark.parametrize(
    ("arch", "detected", "parameters"),
    [("sd15", "SD15", 1_066_235_307), ("sdxl", "SDXL", 3_468_837_945)],
)
@pytest.mark.comfyui
@needs_comfyui
def test_comfyui_detects_each_layout_as_its_model(
    arch: str, detected: str, parameters: int
) -> None:
    # On the meta device: SDXL's 6.9 GB are never drawn or written.
    report = check_checkpoint_layout(
        arch,
        comfyui_dir=Path(os.environ["COMFYUI_DIR"]),
        python=Path(os.environ["COMFYUI_PYTHON"]),
    )
    assert report["detected"] == detected
    # The published checkpoints' parameter counts (UNet + text encoders + VAE).
    assert report["parameters"] == parameters
    assert report["bytes"] == pytest.approx(2 * parameters, rel=0.001)


def read_safetensors_header(path: Path) -> dict[str, dict[str, object]]:
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header: dict[str, dict[str, object]] = json.loads(f.read(size))
    return header


@pytest.mark.comfyui
def test_the_sd15_file_has_an_original_checkpoints_keys(sd15_checkpoint: Path) -> None:
    header = read_safetensors_header(sd15_checkpoint)
    metadata = header.pop("__metadata__")
    assert metadata["arch"] == "sd15" and metadata["seed"] == "0"
    prefixes = {key.split(".", 1)[0] for key in header}
    assert prefixes == {"model", "cond_stage_model", "first_stage_model"}
    assert "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight" in header
    assert header["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"][
        "shape"
    ] == [49408, 768]
    assert header["first_stage_model.decoder.conv_in.weight"]["shape"] == [512, 4, 3, 3]
    assert {h["dtype"] for h in header.values()} == {"F16"}
    assert len(header) == 1130
