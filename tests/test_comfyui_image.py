"""The ComfyUI image's recipe: services/comfyui/nodes.lock.yaml pins ComfyUI and the seed's
custom nodes, services/comfyui/Dockerfile installs exactly what the lock names (its
nodes_lock.py is run here for real against local git repositories), and
services/comfyui/constraints.txt resolves the nodes' known conflicts. No Docker engine is needed:
the build itself runs on a host that has one (docs/comfyui-image.md)."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from genstack.comfyui.node_update import NodeUpdater, Outcome

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "services" / "comfyui"
DOCKERFILE = SERVICE / "Dockerfile"
LOCK = SERVICE / "nodes.lock.yaml"
CONSTRAINTS = SERVICE / "constraints.txt"
IMPORT_CHECK = SERVICE / "src" / "genstack" / "comfyui" / "import_check.py"
SHA = re.compile(r"^[0-9a-f]{40}$")
# The custom nodes the seed's single-image Dockerfile clones (ComfyUI-Manager left out on
# purpose), plus ComfyUI-GGUF, which its GGUF Qwen-Image-Edit models need.
SEED_NODES = {
    "VibeVoice-ComfyUI",
    "ComfyUI-Chatterbox",
    "ComfyUI-SCAIL-Pose",
    "comfyui_controlnet_aux",
    "Comfyui_turbodiffusion",
    "ComfyUI-WanVideoWrapper",
    "ComfyUI-VideoHelperSuite",
}
NODES = SEED_NODES | {"ComfyUI-GGUF"}


@pytest.fixture(scope="module")
def lock() -> dict[str, Any]:
    loaded = yaml.safe_load(LOCK.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


def lock_entries(lock: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "ComfyUI", lock["comfyui"]
    for section in ("nodes", "manager"):
        yield from lock[section].items()


def embedded_script(dockerfile: str) -> str:
    """The nodes_lock.py that the Dockerfile writes with a COPY heredoc."""
    found = re.search(
        r"^COPY <<'PY' /opt/comfyui/nodes_lock\.py\n(.*?)^PY$", dockerfile, re.M | re.S
    )
    assert found, "the Dockerfile no longer writes nodes_lock.py"
    return found.group(1)


def load_script(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    lock: dict[str, Any],
    **env: str,
) -> ModuleType:
    """Import the embedded nodes_lock.py against a lock file and checkout under tmp_path."""
    (tmp_path / "nodes.lock.yaml").write_text(yaml.safe_dump(lock))
    monkeypatch.setenv("COMFYUI_LOCK", str(tmp_path / "nodes.lock.yaml"))
    monkeypatch.setenv("COMFYUI_CONSTRAINTS", str(CONSTRAINTS))
    monkeypatch.setenv("COMFYUI_DIR", str(tmp_path / "ComfyUI"))
    for name in ("ALLOW_UNPINNED", "WITH_MANAGER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    module = ModuleType("nodes_lock")
    module.__file__ = str(tmp_path / "nodes_lock.py")
    exec(compile(embedded_script(DOCKERFILE.read_text()), module.__file__, "exec"), module.__dict__)
    return module


def git_repo(path: Path, files: dict[str, str]) -> str:
    """A real local repository with one commit on main; returns the commit."""
    path.mkdir(parents=True)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(path), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "--quiet", "--initial-branch=main")
    for name, text in files.items():
        (path / name).write_text(text)
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "--quiet", "-m", "x")
    return git("rev-parse", "HEAD")


def head_of(checkout: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def small_lock(tmp_path: Path) -> dict[str, Any]:
    """A lock of the real file's shape over two local repositories."""
    comfy = git_repo(tmp_path / "src" / "comfy", {"requirements.txt": "pyyaml\n"})
    node = git_repo(tmp_path / "src" / "node", {"__init__.py": ""})
    return {
        "comfyui": {
            "repo": f"file://{tmp_path / 'src' / 'comfy'}",
            "commit": comfy,
            "branch": "main",
            "requirements": True,
        },
        "nodes": {
            "some-node": {
                "repo": f"file://{tmp_path / 'src' / 'node'}",
                "commit": node,
                "branch": "main",
                "requirements": False,
                "extra_requirements": ["einops"],
            }
        },
        "manager": {},
    }


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


# --- the lock file ---------------------------------------------------------------------------


def test_the_lock_pins_comfyui_and_the_seeds_nodes_and_nothing_else(lock: dict[str, Any]) -> None:
    assert set(lock) == {"comfyui", "nodes", "manager"}
    assert set(lock["nodes"]) == NODES
    assert lock["comfyui"]["version"] == "0.3.64"
    assert "ComfyUI-Manager" not in lock["nodes"]
    assert set(lock["manager"]) == {"ComfyUI-Manager"}


def test_every_entry_has_a_repo_and_a_commit_or_an_explicit_unpinned_marker(
    lock: dict[str, Any],
) -> None:
    for name, entry in lock_entries(lock):
        assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+\.git", entry["repo"]), name
        # `commit: null` must be written out: a missing key is a mistake, not "unpinned".
        assert "commit" in entry, name
        assert entry["commit"] is None or SHA.match(entry["commit"]), (name, entry["commit"])
        assert entry["branch"], name
        assert entry["requirements"] in (True, False, None), name
        assert entry["pinned_from"], name
        if entry["commit"] is None:
            assert "network" in entry["notes"], f"{name}: say who pins it"


def test_the_lock_records_what_the_seed_got_wrong(lock: dict[str, Any]) -> None:
    turbo = lock["nodes"]["Comfyui_turbodiffusion"]
    # No requirements file, so the seed's `pip install -r ... || true` installed nothing.
    assert turbo["requirements"] is False
    assert {Requirement(r).name for r in turbo["extra_requirements"]} >= {"einops", "imageio"}
    chatterbox = lock["nodes"]["ComfyUI-Chatterbox"]
    assert "thefader" not in chatterbox["repo"]
    assert "thefader" in chatterbox["notes"], "say why the seed's repository is not used"


# --- the Dockerfile --------------------------------------------------------------------------


def test_the_dockerfile_fetches_installs_and_checks_in_that_order(dockerfile: str) -> None:
    assert re.search(
        r"^COPY services/comfyui/nodes\.lock\.yaml services/comfyui/constraints\.txt"
        r" /opt/comfyui/$",
        dockerfile,
        re.M,
    )
    # RUN lines (or their continuations) that call the script, in file order.
    steps = re.findall(
        r"^(?:RUN )?\s*/opt/comfyui/venv/bin/python /opt/comfyui/nodes_lock\.py (\w+)",
        dockerfile,
        re.M,
    )
    assert steps == ["fetch", "install", "check"]
    # The check is import_check.py's, the file `genstack-comfyui start` runs after an update.
    copied = dockerfile.index(f"COPY {IMPORT_CHECK.relative_to(ROOT)} /opt/comfyui/\n")
    assert copied < dockerfile.index(
        "/opt/comfyui/venv/bin/python /opt/comfyui/nodes_lock.py check"
    )
    assert "from import_check import quick_test" in embedded_script(dockerfile)
    shared = IMPORT_CHECK.read_text()
    assert '"--quick-test-for-ci"' in shared and "IMPORT FAILED" in shared


def test_the_import_check_needs_nothing_but_the_standard_library() -> None:
    # It runs with ComfyUI's venv, which has no genstack and no third-party package of ours.
    imported: set[str] = set()
    for node in ast.walk(ast.parse(IMPORT_CHECK.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_no_failure_is_swallowed(dockerfile: str) -> None:
    for hidden in ("|| true", "||true", "|| :", "|| exit 0", "; true"):
        assert hidden not in dockerfile, hidden
    calls = [
        node
        for node in ast.walk(ast.parse(embedded_script(dockerfile)))
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "subprocess.run"
    ]
    assert calls
    for call in calls:
        check = [k for k in call.keywords if k.arg == "check"]
        assert check and ast.literal_eval(check[0].value) is True, ast.unparse(call)


def test_the_manager_is_off_unless_the_build_arg_sets_it(dockerfile: str) -> None:
    assert re.search(r"^ARG WITH_MANAGER=false$", dockerfile, re.M)
    assert re.search(r"^ARG ALLOW_UNPINNED=false$", dockerfile, re.M)
    # The Dockerfile names no repository itself: everything it fetches comes from the lock.
    assert "github.com" not in dockerfile
    assert "ComfyUI-Manager.git" not in dockerfile


def test_the_image_runs_genstack_comfyui_start_beside_comfyuis_own_venv(dockerfile: str) -> None:
    final = dockerfile[dockerfile.rfind("\nFROM ") :]
    assert re.search(r'^ENTRYPOINT \["genstack-comfyui"\]$', final, re.M)
    assert re.search(r'^CMD \["start"\]$', final, re.M)
    assert "COMFYUI_DIR=/opt/comfyui/ComfyUI" in final
    assert "COMFYUI_PYTHON=/opt/comfyui/venv/bin/python" in final
    assert "COMFYUI_PORT=8188" in final and "/system_stats" in final
    assert re.search(r'^VOLUME \["/data/models", "/data/outputs"\]$', final, re.M)
    assert re.search(r"^USER 10001:10001$", final, re.M)
    # ComfyUI's venv sees the base image's CUDA torch; the bridge is synced from uv.lock.
    assert "python -m venv --system-site-packages /opt/comfyui/venv" in dockerfile
    assert 'uv sync --frozen --no-dev --no-editable --package "${PACKAGE}"' in dockerfile
    assert re.search(r"^ARG PACKAGE=genstack-comfyui$", dockerfile, re.M)


def test_the_constraints_pin_torch_to_the_base_images_version(dockerfile: str) -> None:
    [tag] = re.findall(r"^ARG TORCH_IMAGE=pytorch/pytorch:(\S+)$", dockerfile, re.M)
    torch = constraints()["torch"]
    assert str(torch.specifier) == f"=={tag.split('-')[0]}"


# --- nodes_lock.py, run for real ---------------------------------------------------------------


def test_the_script_takes_every_lock_entry_and_the_manager_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lock: dict[str, Any]
) -> None:
    serving = load_script(tmp_path, monkeypatch, lock)
    assert set(serving.entries()) == {"ComfyUI"} | NODES
    assert serving.entries()["ComfyUI"][1] == tmp_path / "ComfyUI"
    assert serving.entries()["ComfyUI-GGUF"][1] == tmp_path / "ComfyUI" / "custom_nodes" / (
        "ComfyUI-GGUF"
    )
    private = load_script(tmp_path, monkeypatch, lock, WITH_MANAGER="true")
    assert set(private.entries()) == {"ComfyUI", "ComfyUI-Manager"} | NODES


@needs_git
def test_fetch_checks_out_every_pinned_commit_and_holds_the_requirements_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = small_lock(tmp_path)
    script = load_script(tmp_path, monkeypatch, small)
    script.fetch()
    for name, (entry, path) in script.entries().items():
        assert head_of(path) == entry["commit"], name
    # Every requirements file and extra goes into one pip call, with the constraints.
    args = script.pip_install_args()
    assert args[1:5] == ["-m", "pip", "install", "--constraint"]
    assert args[5] == str(CONSTRAINTS)
    assert str(tmp_path / "ComfyUI" / "requirements.txt") in args
    assert "einops" in args
    assert not any("custom_nodes/some-node/requirements.txt" in a for a in args)

    small["nodes"]["some-node"]["requirements"] = True  # the lock is wrong about the checkout
    shutil.rmtree(tmp_path / "ComfyUI")
    wrong = load_script(tmp_path, monkeypatch, small)
    with pytest.raises(SystemExit, match=r"some-node: .* says requirements: True"):
        wrong.fetch()


@needs_git
def test_fetch_refuses_an_unpinned_entry_unless_the_build_arg_allows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = small_lock(tmp_path)
    tip = small["nodes"]["some-node"]["commit"]
    small["nodes"]["some-node"]["commit"] = None
    script = load_script(tmp_path, monkeypatch, small)
    with pytest.raises(SystemExit, match=r"some-node: no commit pinned.*ALLOW_UNPINNED=true"):
        script.fetch()
    assert not (tmp_path / "ComfyUI").exists(), "pins are judged before anything is fetched"

    allowed = load_script(tmp_path, monkeypatch, small, ALLOW_UNPINNED="true")
    allowed.fetch()
    node = tmp_path / "ComfyUI" / "custom_nodes" / "some-node"
    assert head_of(node) == tip

    small["nodes"]["some-node"]["commit"] = "main"
    shutil.rmtree(tmp_path / "ComfyUI")
    branch_name = load_script(tmp_path, monkeypatch, small, ALLOW_UNPINNED="true")
    with pytest.raises(SystemExit, match=r"is not a 40-hex SHA"):
        branch_name.fetch()


@needs_git
def test_the_images_checkouts_follow_their_lock_branch_so_update_nodes_on_start_can_move_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = small_lock(tmp_path)
    script = load_script(tmp_path, monkeypatch, small)
    script.fetch()
    node = tmp_path / "ComfyUI" / "custom_nodes" / "some-node"
    assert (node / ".git" / "shallow").is_file()  # the build fetched one commit
    upstream = tmp_path / "src" / "node"
    (upstream / "nodes.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    subprocess.run(["git", "-C", str(upstream), "add", "."], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(upstream),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "commit",
            "--quiet",
            "-m",
            "upstream moves on",
        ],
        check=True,
    )
    updater = NodeUpdater(
        comfyui_dir=tmp_path / "ComfyUI",
        python=Path(sys.executable),
        constraints=CONSTRAINTS,
        git_timeout_s=30,
        install_timeout_s=30,
        check_timeout_s=30,
    )

    result = updater.update(node)  # start's step for one node; the import check needs ComfyUI

    assert result.outcome is Outcome.UPDATED, result.detail
    assert head_of(node) == head_of(upstream) != small["nodes"]["some-node"]["commit"]


# --- constraints.txt ---------------------------------------------------------------------------


def constraints() -> dict[str, Requirement]:
    found: dict[str, Requirement] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            assert requirement.name not in found, f"{requirement.name} constrained twice"
            found[requirement.name] = requirement
    return found


def admits(specifier: SpecifierSet, version: str) -> bool:
    return specifier.contains(version, prereleases=True)


def test_exactly_one_onnxruntime_can_be_installed() -> None:
    pinned = constraints()
    # Plain onnxruntime admits no version at all, so a node asking for it fails the build.
    for version in ("0.0.1", "1.16.3", "1.22.0", "99.0"):
        assert not admits(pinned["onnxruntime"].specifier, version), version
    assert admits(pinned["onnxruntime-gpu"].specifier, "1.22.0")


def test_transformers_stays_below_5_for_vibevoice() -> None:
    transformers = constraints()["transformers"].specifier
    assert admits(transformers, "4.57.6")
    assert not admits(transformers, "5.0.0")
    assert not admits(transformers, "4.51.2")


def test_one_opencv_version_for_every_distribution_of_cv2() -> None:
    pinned = constraints()
    versions = {
        str(pinned[name].specifier)
        for name in ("opencv-python", "opencv-contrib-python", "opencv-python-headless")
    }
    assert len(versions) == 1 and versions.pop().startswith("==")


def test_every_constraint_says_who_needs_it() -> None:
    """Each constraint line sits under a comment in the same paragraph."""
    commented = False
    for line in CONSTRAINTS.read_text().splitlines():
        if not line.strip():
            commented = False
        elif line.startswith("#"):
            commented = True
        else:
            assert commented, f"no comment explains {line!r}"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
