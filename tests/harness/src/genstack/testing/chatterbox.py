"""Chatterbox test checkpoints (full-size random weights, ``genstack-chatterbox
make-test-checkpoint``), built once per machine and kept.

chatterbox-tts loads only full-size models, so a test checkpoint is about 3.3 GB and takes
a few minutes and about 7 GB of memory to build. :func:`cached_chatterbox_checkpoint` keeps
one per variant and builder key (the builder's source and the chatterbox-tts version, which
the command prints) under ``$GENSTACK_TEST_CACHE`` (default ``~/.cache/genstack-testing``);
a file lock makes concurrent test sessions wait for one build instead of each making its
own. Nothing prunes that folder (delete it to get the space back).

The builder runs in chatterbox's own environment (its pins clash with the stack env's), so
callers pass its console script; the stack env finds it with :func:`chatterbox_command`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

from genstack.testing.checkpoints import cache_root

__all__ = ["BUILD_TIMEOUT_S", "cached_chatterbox_checkpoint", "chatterbox_command"]

BUILD_TIMEOUT_S = 1800.0  # about 2-4 minutes on 2 cores; a slow disk takes longer
_COMPLETE = "COMPLETE"


def chatterbox_command(repo_root: Path | None = None) -> Path:
    """``genstack-chatterbox`` of the environment running the tests when it has one, else of
    the chatterbox env (``.venvs/chatterbox`` of the checkout; ``make env-chatterbox``)."""
    here = Path(sys.executable).parent / "genstack-chatterbox"
    if here.is_file():
        return here
    root = repo_root or Path(__file__).resolve().parents[5]
    path = root / ".venvs" / "chatterbox" / "bin" / "genstack-chatterbox"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `make env-chatterbox` first")
    return path


def _run(argv: list[str], timeout: float) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{tail}")
    return done.stdout.strip()


def cached_chatterbox_checkpoint(
    variant: str = "english",
    *,
    command: Path | None = None,
    cache: Path | None = None,
    timeout: float = BUILD_TIMEOUT_S,
) -> Path:
    """The ``variant`` (english | multilingual | turbo) test checkpoint folder, built first
    when the cache has none for this builder."""
    command = command or chatterbox_command()
    key = _run([str(command), "make-test-checkpoint", "--print-key", "--variant", variant], 120)
    folder = (cache or cache_root()) / "chatterbox"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / key
    with (folder / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (path / _COMPLETE).is_file():
            partial = folder / f".{key}.{os.getpid()}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            try:
                _run(
                    [str(command), "make-test-checkpoint", "--variant", variant, str(partial)],
                    timeout,
                )
                (partial / _COMPLETE).write_text(key + "\n")
                shutil.rmtree(path, ignore_errors=True)
                partial.replace(path)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
    return path
