"""UPDATE_NODES_ON_START's import check against a real ComfyUI (COMFYUI_DIR: a checkout;
COMFYUI_PYTHON: its interpreter). The checkout is copied to a tmp folder first, so custom nodes
can sit beside it without writing into COMFYUI_DIR. Skipped when COMFYUI_DIR is unset."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import Upstream, git, node_source

from genstack.comfyui.node_update import IMPORT_CHECK, NodeUpdater, Outcome

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.skipif(not os.environ.get("COMFYUI_DIR"), reason="COMFYUI_DIR is not set"),
    pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed"),
]
# The checkout's own state folders stay behind (ComfyUI recreates what it needs).
LEFT_BEHIND = {"custom_nodes", "input", "output", "user", "models", "temp", ".git"}


@pytest.fixture
def comfyui(tmp_path: Path) -> Path:
    source = Path(os.environ["COMFYUI_DIR"])
    copy = tmp_path / "ComfyUI"

    def ignore(folder: str, names: list[str]) -> set[str]:
        top = Path(folder) == source
        return {n for n in names if n == "__pycache__" or (top and n in LEFT_BEHIND)}

    shutil.copytree(source, copy, ignore=ignore, symlinks=True)
    (copy / "custom_nodes").mkdir()
    return copy


def python() -> Path:
    return Path(os.environ.get("COMFYUI_PYTHON", "python"))


def test_the_import_check_loads_real_comfyui_and_names_the_node_that_fails(
    comfyui: Path, tmp_path: Path
) -> None:
    for name, source in {
        "genstack-good": node_source("GenstackGood"),
        "genstack-bad": 'raise ImportError("genstack-bad needs a package nobody installed")\n',
    }.items():
        (comfyui / "custom_nodes" / name).mkdir()
        (comfyui / "custom_nodes" / name / "__init__.py").write_text(source)
    report = tmp_path / "report.json"

    done = subprocess.run(
        [python(), IMPORT_CHECK, comfyui, report, tmp_path / "scratch"],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    loaded = json.loads(report.read_text())
    assert loaded["error"] is None
    assert loaded["node_classes"] > 100  # ComfyUI's own nodes and extras were loaded
    assert loaded["registered"] == {"genstack-good": 1}
    assert list(loaded["failed"]) == ["genstack-bad"]
    assert (
        "ImportError: genstack-bad needs a package nobody installed"
        in (loaded["failed"]["genstack-bad"])
    )
    assert "Cannot import" in loaded["failed"]["genstack-bad"]


def test_a_node_updated_to_a_commit_real_comfyui_cannot_load_is_rolled_back(
    comfyui: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    nodes = comfyui / "custom_nodes"
    good = Upstream(tmp_path, "genstack-good", {"__init__.py": node_source("GenstackGood")})
    bad = Upstream(tmp_path, "genstack-bad", {"__init__.py": node_source("GenstackBad")})
    good.clone_into(nodes, "genstack-good")
    bad.clone_into(nodes, "genstack-bad")
    good_new = good.commit({"__init__.py": node_source("GenstackGood", "# v2")})
    bad.commit({"__init__.py": 'raise ImportError("genstack-bad v2 is broken")\n'})
    (tmp_path / "constraints.txt").write_text("")

    report = NodeUpdater(
        comfyui_dir=comfyui,
        python=python(),
        constraints=tmp_path / "constraints.txt",
        git_timeout_s=30,
        install_timeout_s=300,
        check_timeout_s=300,
    ).run()

    by_name = report.by_name()
    assert by_name["genstack-good"].outcome is Outcome.UPDATED
    assert git(nodes / "genstack-good", "rev-parse", "HEAD") == good_new
    assert by_name["genstack-bad"].outcome is Outcome.ROLLED_BACK
    assert git(nodes / "genstack-bad", "rev-parse", "HEAD") == bad.first
    assert "ImportError: genstack-bad v2 is broken" in by_name["genstack-bad"].detail
    assert "import check after rolling back genstack-bad" in caplog.text
    assert "still fails" not in caplog.text
