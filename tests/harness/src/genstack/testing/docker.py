"""Whether a Docker engine answers, so fixtures can prefer containers where one does."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

__all__ = ["docker_available"]

# Set to "0" to force local processes even where an engine answers (e.g. to compare runs).
DISABLE_ENV = "GENSTACK_TESTING_DOCKER"


@functools.cache
def docker_available() -> bool:
    """True only if ``docker info`` exits 0 within 5 s. Cached for the process.

    Cached because every fixture asks, and a hung engine would cost 5 s each time.
    """
    if os.environ.get(DISABLE_ENV, "").strip() == "0":
        return False
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run(
            [docker, "info"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0
