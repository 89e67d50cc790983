"""UPDATE_NODES_ON_START with real parts: real git repositories (a bare upstream per node, a
clone under a tmp COMFYUI_DIR/custom_nodes, new upstream commits), real pip and uv installing a
local wheel into a real venv, and import_check.py run by path against a ComfyUI stand-in that
logs what ComfyUI 0.3.64 logs (the real ComfyUI: test_node_update_real.py)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Upstream, git, node_source, tiny_wheel

from genstack.comfyui.node_update import IMPORT_CHECK, NodeUpdater, Outcome, mask

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Requirements name local wheels only; an install that reached for an index would fail.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("UV_OFFLINE", "1")


def updater(comfyui: Path, python: Path, tmp_path: Path, **limits: float) -> NodeUpdater:
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# nothing constrained\n")
    return NodeUpdater(
        comfyui_dir=comfyui,
        python=python,
        constraints=constraints,
        git_timeout_s=limits.get("git", 30),
        install_timeout_s=limits.get("install", 120),
        check_timeout_s=limits.get("check", 60),
    )


def head(path: Path) -> str:
    return git(path, "rev-parse", "HEAD")


def errors(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def test_a_node_moves_to_its_new_upstream_commit_and_installs_its_changed_requirements(
    fake_comfyui: Path,
    pip_python: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    wheel = tiny_wheel(tmp_path / "wheels")
    nodes = fake_comfyui / "custom_nodes"
    moving = Upstream(tmp_path, "moving", {"__init__.py": node_source("Moving")})
    still = Upstream(tmp_path, "still", {"__init__.py": node_source("Still")})
    moving.clone_into(nodes, "moving")
    still.clone_into(nodes, "still")
    (nodes / "not-git").mkdir()  # a plain folder: not touched
    (nodes / "not-git" / "__init__.py").write_text(node_source("Plain"))
    # The new commit needs a package its new requirements.txt brings: the check passes only if
    # the install ran before it.
    new = moving.commit(
        {
            "requirements.txt": f"{wheel}\n",
            "__init__.py": node_source("Moving", "import genstack_tiny"),
        }
    )

    report = updater(fake_comfyui, pip_python, tmp_path).run()

    by_name = report.by_name()
    assert set(by_name) == {"moving", "still"}
    assert by_name["moving"].outcome is Outcome.UPDATED
    assert by_name["moving"].requirements_installed
    assert (by_name["moving"].old, by_name["moving"].new) == (moving.first, new)
    assert head(nodes / "moving") == new
    assert by_name["still"].outcome is Outcome.UNCHANGED
    assert not by_name["still"].requirements_installed
    assert head(nodes / "still") == still.first
    subprocess.run([pip_python, "-c", "import genstack_tiny"], check=True)
    assert errors(caplog) == ""
    assert f"custom node moving: {moving.first[:12]} -> {new[:12]}" in caplog.text
    assert "custom nodes: 1 updated (moving); 1 unchanged (still); 0 rolled back" in caplog.text


def test_a_node_whose_new_commit_does_not_import_is_rolled_back_and_reported(
    fake_comfyui: Path,
    pip_python: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    nodes = fake_comfyui / "custom_nodes"
    broken = Upstream(tmp_path, "breaks", {"__init__.py": node_source("Breaks")})
    fine = Upstream(tmp_path, "fine", {"__init__.py": node_source("Fine")})
    broken.clone_into(nodes, "breaks")
    fine.clone_into(nodes, "fine")
    broken.commit({"__init__.py": 'raise ImportError("needs torch 9")\n'})
    fine_new = fine.commit({"__init__.py": node_source("Fine", "# v2")})

    report = updater(fake_comfyui, pip_python, tmp_path).run()

    by_name = report.by_name()
    assert by_name["breaks"].outcome is Outcome.ROLLED_BACK
    assert head(nodes / "breaks") == broken.first
    assert "needs torch 9" not in (nodes / "breaks" / "__init__.py").read_text()
    assert by_name["fine"].outcome is Outcome.UPDATED  # one bad node holds back no other
    assert head(nodes / "fine") == fine_new
    logged = errors(caplog)
    assert "custom node breaks: fails to load after the update" in logged
    assert "ImportError: needs torch 9" in logged
    assert f"rolled back to {broken.first[:12]} (the previous version is kept)" in logged
    # The second check found the previous version loading again.
    assert "import check after rolling back breaks" in caplog.text
    assert "still fails" not in logged
    assert "1 updated (fine); 0 unchanged; 1 rolled back (breaks)" in caplog.text


def test_a_requirements_install_that_fails_rolls_the_node_back(
    fake_comfyui: Path,
    pip_python: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    nodes = fake_comfyui / "custom_nodes"
    upstream = Upstream(tmp_path, "needy", {"__init__.py": node_source("Needy")})
    upstream.clone_into(nodes, "needy")
    missing = tmp_path / "nowhere" / "genstack_missing-0.1-py3-none-any.whl"
    upstream.commit({"requirements.txt": f"{missing}\n"})

    report = updater(fake_comfyui, pip_python, tmp_path).run()

    [result] = report.nodes
    assert result.outcome is Outcome.ROLLED_BACK
    assert head(nodes / "needy") == upstream.first
    assert not (nodes / "needy" / "requirements.txt").exists()
    logged = errors(caplog)
    assert "custom node needy: requirements install failed" in logged
    assert "genstack_missing-0.1-py3-none-any.whl" in logged  # pip's own words, tailed
    assert "rolled back to" in logged
    assert "import check" not in caplog.text  # nothing moved, nothing to check


def test_an_unchanged_requirements_file_is_not_installed_again(
    fake_comfyui: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A requirements file that cannot install, unchanged by the update: pip is never run, so the
    # node moves (COMFYUI_PYTHON here has no pip either).
    caplog.set_level(logging.INFO)
    nodes = fake_comfyui / "custom_nodes"
    upstream = Upstream(
        tmp_path,
        "steady",
        {"__init__.py": node_source("Steady"), "requirements.txt": "/nowhere/x.whl\n"},
    )
    upstream.clone_into(nodes, "steady")
    new = upstream.commit({"__init__.py": node_source("Steady", "# v2")})
    report = updater(fake_comfyui, Path(sys.executable), tmp_path).run()
    assert report.nodes[0].outcome is Outcome.UPDATED
    assert head(nodes / "steady") == new
    assert "installing" not in caplog.text


def test_local_changes_a_diverged_or_ahead_branch_and_a_detached_head_are_left_as_they_are(
    fake_comfyui: Path,
    pip_python: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    nodes = fake_comfyui / "custom_nodes"
    made = {
        name: Upstream(tmp_path, name, {"__init__.py": node_source(name.capitalize())})
        for name in ("dirty", "diverged", "ahead", "detached")
    }
    for name, upstream in made.items():
        upstream.clone_into(nodes, name)
        upstream.commit({"__init__.py": node_source(name.capitalize(), "# upstream moved")})
    (nodes / "dirty" / "__init__.py").write_text(node_source("Dirty", "# my own fix"))
    # diverged: a local commit beside upstream's; ahead: a local commit on top of upstream's.
    git(nodes / "ahead", "pull", "--quiet", "--ff-only")
    for name in ("diverged", "ahead"):
        (nodes / name / "local.txt").write_text("mine\n")
        git(nodes / name, "add", "local.txt")
        git(nodes / name, "commit", "--quiet", "-m", "local")
    git(nodes / "detached", "checkout", "--quiet", "--detach", "HEAD")
    before = {name: head(nodes / name) for name in made}

    report = updater(fake_comfyui, pip_python, tmp_path).run()

    by_name = report.by_name()
    assert {name: by_name[name].outcome for name in made} == dict.fromkeys(made, Outcome.LEFT)
    assert {name: head(nodes / name) for name in made} == before
    assert "# my own fix" in (nodes / "dirty" / "__init__.py").read_text()
    assert by_name["dirty"].detail == "it has local changes to tracked files"
    assert by_name["diverged"].detail.startswith("it has diverged from its upstream")
    assert by_name["ahead"].detail == "it is ahead of its upstream (local commits)"
    assert by_name["detached"].detail == "its HEAD is detached: no branch to follow"
    for name in made:
        assert f"custom node {name}: left as it is at {before[name][:12]}" in caplog.text
    assert "import check" not in caplog.text


def test_a_fetch_that_fails_keeps_the_node_and_logs_no_credentials(
    fake_comfyui: Path,
    pip_python: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    nodes = fake_comfyui / "custom_nodes"
    upstream = Upstream(tmp_path, "gone", {"__init__.py": node_source("Gone")})
    upstream.clone_into(nodes, "gone")
    # Nothing listens on port 9 of the loopback: the fetch fails at once.
    git(nodes / "gone", "remote", "set-url", "origin", "https://bot:s3cret@127.0.0.1:9/x.git")

    report = updater(fake_comfyui, pip_python, tmp_path).run()

    assert report.nodes[0].outcome is Outcome.ROLLED_BACK
    assert head(nodes / "gone") == upstream.first
    assert "custom node gone: fetch failed" in errors(caplog)
    assert "127.0.0.1" in caplog.text  # git's own words, tailed (git drops the password too)
    assert "s3cret" not in caplog.text


def test_an_import_check_that_times_out_rolls_every_moved_node_back(
    fake_comfyui: Path,
    pip_python: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    nodes = fake_comfyui / "custom_nodes"
    upstream = Upstream(tmp_path, "moves", {"__init__.py": node_source("Moves")})
    upstream.clone_into(nodes, "moves")
    upstream.commit({"__init__.py": node_source("Moves", "# v2")})
    (fake_comfyui / "SLOW").write_text("")

    report = updater(fake_comfyui, pip_python, tmp_path, check=2).run()

    assert report.nodes[0].outcome is Outcome.ROLLED_BACK
    assert head(nodes / "moves") == upstream.first
    logged = errors(caplog)
    assert "the import check did not finish, so the update cannot be trusted" in logged
    assert "timed out after 2s" in logged
    assert "ComfyUI does not load even with the rolled-back nodes" in logged


def test_a_node_that_already_failed_is_reported_but_not_rolled_back(
    fake_comfyui: Path,
    pip_python: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    nodes = fake_comfyui / "custom_nodes"
    moving = Upstream(tmp_path, "moving", {"__init__.py": node_source("Moving")})
    moving.clone_into(nodes, "moving")
    moving.commit({"__init__.py": node_source("Moving", "# v2")})
    (nodes / "old-broken").mkdir()
    (nodes / "old-broken" / "__init__.py").write_text("import nonexistent_module_xyz\n")

    report = updater(fake_comfyui, pip_python, tmp_path).run()

    assert report.nodes[0].outcome is Outcome.UPDATED
    assert "custom node old-broken fails to load (this start did not update it)" in errors(caplog)
    assert "nonexistent_module_xyz" in errors(caplog)


def test_without_pip_the_install_goes_through_uv_or_says_why_it_cannot(
    fake_comfyui: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    if not Path(uv).is_file():
        pytest.skip("uv is not installed (make install puts it in .tools/bin)")
    venv = tmp_path / "uv-venv"
    subprocess.run([uv, "venv", "--quiet", str(venv)], check=True)
    python = venv / "bin" / "python"
    wheel = tiny_wheel(tmp_path / "wheels")
    nodes = fake_comfyui / "custom_nodes"
    upstream = Upstream(tmp_path, "needy", {"__init__.py": node_source("Needy")})
    upstream.clone_into(nodes, "needy")
    new = upstream.commit(
        {
            "requirements.txt": f"{wheel}\n",
            "__init__.py": node_source("Needy", "import genstack_tiny"),
        }
    )
    # PATH: git, and uv or not.
    bare_path = tmp_path / "path"
    bare_path.mkdir()
    (bare_path / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    monkeypatch.setenv("PATH", str(bare_path))

    no_uv = updater(fake_comfyui, python, tmp_path).run()
    assert no_uv.nodes[0].outcome is Outcome.ROLLED_BACK
    assert head(nodes / "needy") == upstream.first
    assert f"COMFYUI_PYTHON={python} has no pip" in errors(caplog)
    assert "uv is not on PATH" in errors(caplog)

    (bare_path / "uv").symlink_to(uv)
    with_uv = updater(fake_comfyui, python, tmp_path).run()
    assert with_uv.nodes[0].outcome is Outcome.UPDATED
    assert head(nodes / "needy") == new
    subprocess.run([python, "-c", "import genstack_tiny"], check=True)


# --- import_check.py on its own ----------------------------------------------------------------


def test_the_import_check_names_each_failed_node_with_its_reason(
    fake_comfyui: Path, tmp_path: Path
) -> None:
    nodes = fake_comfyui / "custom_nodes"
    for name, source in {
        "good": node_source("Good"),
        "bad": 'raise ImportError("no such wheel")\n',
        "badly": node_source("Badly"),  # bad's name is a prefix of it: no reason crosses over
        "empty": "VALUE = 1\n",  # loads, registers nothing: ComfyUI marks it IMPORT FAILED
    }.items():
        (nodes / name).mkdir()
        (nodes / name / "__init__.py").write_text(source)
    report = tmp_path / "report.json"

    done = subprocess.run(
        [sys.executable, IMPORT_CHECK, fake_comfyui, report, tmp_path / "scratch"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    loaded = json.loads(report.read_text())
    assert set(loaded["failed"]) == {"bad", "empty"}
    assert "ImportError: no such wheel" in loaded["failed"]["bad"]
    assert "Cannot import" in loaded["failed"]["bad"]
    assert "lack of NODE_CLASS_MAPPINGS" in loaded["failed"]["empty"]
    assert loaded["registered"] == {"good": 1, "badly": 1}
    assert loaded["other_failures"] == []
    assert loaded["error"] is None


def test_the_import_check_reports_a_comfyui_that_does_not_load(
    fake_comfyui: Path, tmp_path: Path
) -> None:
    (fake_comfyui / "BROKEN").write_text("")
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, IMPORT_CHECK, fake_comfyui, report, tmp_path / "scratch"],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "ComfyUI itself is broken" in report.read_text()


def test_credentials_in_urls_are_masked() -> None:
    assert mask("fatal: https://u:p@host/x and http://tok@h/y") == (
        "fatal: https://***@host/x and http://***@h/y"
    )
