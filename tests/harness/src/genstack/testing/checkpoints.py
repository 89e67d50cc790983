"""Full-size Stable Diffusion checkpoints with random weights, so a real ComfyUI runs its real
generation path (checkpoint loader, text encoder, sampler, VAE) where no weights can be
downloaded: the pictures are noise, but every tensor has its real shape and ComfyUI detects
and loads the file as it would the original.

ComfyUI's own interpreter (COMFYUI_PYTHON) builds them from ComfyUI's own model classes with
checkpoint_script.py (beside this file); genstack's environments need no torch for it.
SD1.5 is about 2.1 GB at fp16 (about 30 s to build on 2 cores, 3 GB peak memory); SDXL about
6.9 GB. :func:`cached_checkpoint` keeps one per ComfyUI version, builder, dtype and seed under
``$GENSTACK_TEST_CACHE`` (default ``~/.cache/genstack-testing``), so a machine builds each
once; nothing prunes that folder (delete it to get the space back).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "ARCHS",
    "CheckpointBuildError",
    "build_checkpoint",
    "build_sd15_checkpoint",
    "build_sdxl_checkpoint",
    "cache_root",
    "cached_checkpoint",
    "check_checkpoint_layout",
    "comfyui_version",
]

ARCHS = ("sd15", "sdxl")
DTYPES = ("fp16", "bf16", "fp32")
SCRIPT = Path(__file__).with_name("checkpoint_script.py")
BUILD_TIMEOUT_S = 1800.0  # SDXL on a slow disk; SD1.5 takes about 30 s

Builder = Callable[..., Path]


class CheckpointBuildError(Exception):
    """The build script failed; the message carries the end of what it printed."""


def _run_script(python: Path, comfyui_dir: Path, *args: str, timeout: float) -> dict[str, Any]:
    argv = [str(python), str(SCRIPT), "--comfyui-dir", str(comfyui_dir), *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CheckpointBuildError(f"{SCRIPT.name} {' '.join(args)}: over {timeout:.0f}s") from exc
    except OSError as exc:
        raise CheckpointBuildError(f"cannot run {python}: {exc}") from exc
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise CheckpointBuildError(
            f"{SCRIPT.name} {' '.join(args)} exited {done.returncode}:\n{tail}"
        )
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def _checked(arch: str, dtype: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"arch {arch!r}: one of {', '.join(ARCHS)}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: one of {', '.join(DTYPES)}")


def build_checkpoint(
    arch: str,
    dest: Path,
    *,
    comfyui_dir: Path,
    python: Path,
    dtype: str = "fp16",
    seed: int = 0,
    timeout: float = BUILD_TIMEOUT_S,
) -> Path:
    """Write a random-weight ``arch`` checkpoint (one .safetensors) to ``dest``, whole or not
    at all (written beside it, then renamed). The same seed gives the same tensors (the
    header's metadata may come in another order)."""
    _checked(arch, dtype)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    try:
        _run_script(
            python,
            comfyui_dir,
            "--arch",
            arch,
            "--dtype",
            dtype,
            "--seed",
            str(seed),
            "--out",
            str(partial),
            timeout=timeout,
        )
        partial.chmod(0o644)  # safetensors writes 0600; a ComfyUI run as another user reads it
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)
    return dest


def build_sd15_checkpoint(
    dest: Path, *, comfyui_dir: Path, python: Path, dtype: str = "fp16", seed: int = 0
) -> Path:
    """SD1.5 (UNet, CLIP-L, VAE; 1.07 billion parameters, about 2.1 GB at fp16)."""
    return build_checkpoint(
        "sd15", dest, comfyui_dir=comfyui_dir, python=python, dtype=dtype, seed=seed
    )


def build_sdxl_checkpoint(
    dest: Path, *, comfyui_dir: Path, python: Path, dtype: str = "fp16", seed: int = 0
) -> Path:
    """SDXL base (UNet, CLIP-L, OpenCLIP-G, VAE; 3.47 billion parameters, about 6.9 GB at
    fp16, about 8 GB of memory to build)."""
    return build_checkpoint(
        "sdxl", dest, comfyui_dir=comfyui_dir, python=python, dtype=dtype, seed=seed
    )


def check_checkpoint_layout(
    arch: str, *, comfyui_dir: Path, python: Path, dtype: str = "fp16", timeout: float = 300.0
) -> dict[str, Any]:
    """Build ``arch`` on the meta device only (seconds, no memory) and read its state dict as
    ComfyUI's checkpoint loader does. Returns the script's report: ``detected`` (ComfyUI's
    model class, e.g. "SDXL"), ``keys``, ``parameters``, ``bytes`` (at ``dtype``); raises
    CheckpointBuildError when it would not load as ``arch``."""
    _checked(arch, dtype)
    return _run_script(
        python, comfyui_dir, "--arch", arch, "--dtype", dtype, "--check", timeout=timeout
    )


def comfyui_version(comfyui_dir: Path) -> str:
    """The checkout's version (comfyui_version.py), with its git commit where it is a clone."""
    text = (comfyui_dir / "comfyui_version.py").read_text()
    found = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", text)
    if found is None:
        raise CheckpointBuildError(f"no __version__ in {comfyui_dir / 'comfyui_version.py'}")
    version = found.group(1)
    if (comfyui_dir / ".git").exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            commit = subprocess.run(
                ["git", "-C", str(comfyui_dir), "rev-parse", "--short=12", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            version = f"{version}-{commit}" if commit else version
    return version


def cache_root() -> Path:
    """``$GENSTACK_TEST_CACHE``, else ``$XDG_CACHE_HOME/genstack-testing`` (~/.cache)."""
    if os.environ.get("GENSTACK_TEST_CACHE"):
        return Path(os.environ["GENSTACK_TEST_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "genstack-testing"


def cached_checkpoint(
    arch: str,
    *,
    comfyui_dir: Path,
    python: Path,
    dtype: str = "fp16",
    seed: int = 0,
    cache: Path | None = None,
    build: Builder = build_checkpoint,
) -> Path:
    """The ``arch`` checkpoint from the cache, built first when missing. Keyed by ComfyUI's
    version, the build script's own hash, dtype and seed; a file lock makes concurrent test
    sessions wait for one build instead of each making its own."""
    _checked(arch, dtype)
    script = hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:12]
    version = re.sub(r"[^A-Za-z0-9.]+", "-", comfyui_version(comfyui_dir))
    folder = (cache or cache_root()) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{arch}-{dtype}-seed{seed}-comfyui{version}-{script}.safetensors"
    with (folder / f"{path.stem}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not path.is_file():
            build(arch, path, comfyui_dir=comfyui_dir, python=python, dtype=dtype, seed=seed)
    return path
