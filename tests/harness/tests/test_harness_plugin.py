"""The plugin as other packages see it: an inner pytest run in a subprocess."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from genstack.testing.docker import docker_available
from genstack.testing.plugin import gpu_available

INNER_TESTS = textwrap.dedent(
    """
    import sys
    import pytest

    def test_failing_service_shows_its_log(service_process):
        proc = service_process(
            [sys.executable, "-c", "print('inner service says hi', flush=True)"], name="chatty"
        )
        proc.wait(timeout=10)
        assert False, "fail on purpose"

    @pytest.mark.docker
    def test_docker_marked():
        pass

    @pytest.mark.gpu
    def test_gpu_marked():
        pass
    """
)


def test_markers_and_log_tails_on_failure(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-rs", "--strict-markers", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "service chatty log tail" in out
    assert "inner service says hi" in out
    skipped = int(not docker_available()) + int(not gpu_available())
    if skipped:
        assert f"{skipped} skipped" in out
    if not docker_available():
        assert "no Docker engine answers" in out
    if not gpu_available():
        assert "lists no GPU" in out
