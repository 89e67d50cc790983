"""The workspace grows by adding a folder: a new service under services/ is a workspace member,
gets its own environment, tests and type check from the Makefile, with no list to edit."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".tools" / "bin" / "uv"  # the Makefile's pinned uv (make uv)
# Every folder under libs/ and services/ with a pyproject.toml, and deploy/ (the Makefile's).
PACKAGE_DIRS = sorted(
    [p.parent for p in ROOT.glob("*/*/pyproject.toml") if p.parts[-3] in {"libs", "services"}]
    + [ROOT / "deploy"]
)
MEMBER_DIRS = [*PACKAGE_DIRS, ROOT / "tests" / "harness"]

EXAMPLE_PYPROJECT = """\
[project]
name = "genstack-example"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["genstack-core"]

[dependency-groups]
dev = ["pytest>=8.3", "pytest-timeout>=2.3"]

[tool.uv.sources]
genstack-core = { workspace = true }

[build-system]
requires = ["uv_build>=0.9,<0.14"]
build-backend = "uv_build"

[tool.uv.build-backend]
module-name = "genstack.example"
"""

EXAMPLE_TEST = """\
from genstack.example import answer


def test_the_example_answers() -> None:
    assert answer() == 42
"""


def pyproject(folder: Path) -> dict[str, Any]:
    return tomllib.loads((folder / "pyproject.toml").read_text())


def test_every_package_names_its_module_and_its_workspace_sources() -> None:
    """The Makefile reads `name` and `module-name`; uv needs a member's workspace dependencies
    in that member's own [tool.uv.sources] (the root lists none)."""
    names = {pyproject(d)["project"]["name"] for d in MEMBER_DIRS}
    for folder in MEMBER_DIRS:
        data = pyproject(folder)
        module = data["tool"]["uv"]["build-backend"]["module-name"]
        assert (folder / "src" / Path(*module.split("."))).is_dir(), (
            f"{folder}: module-name {module!r} has no src/ folder"
        )
        project = data["project"]
        groups = data.get("dependency-groups", {})
        wanted = [*project.get("dependencies", []), *groups.get("dev", [])]
        sources = data.get("tool", {}).get("uv", {}).get("sources", {})
        for requirement in wanted:
            name = Requirement(requirement).name
            if name in names:
                assert sources.get(name) == {"workspace": True}, (
                    f"{folder}/pyproject.toml: add `{name} = {{ workspace = true }}` "
                    "under [tool.uv.sources]"
                )


def test_the_makefile_lists_every_package() -> None:
    printed = subprocess.run(
        ["make", "--no-print-directory", "print-packages"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    rows = [printed[i : i + 4] for i in range(0, len(printed), 4)]
    expected = [
        [
            d.name,
            pyproject(d)["project"]["name"],
            pyproject(d)["tool"]["uv"]["build-backend"]["module-name"],
            f"{d.relative_to(ROOT)}/tests",
        ]
        for d in PACKAGE_DIRS
    ]
    assert sorted(rows) == sorted(expected)
    assert len({d.name for d in PACKAGE_DIRS}) == len(PACKAGE_DIRS), (
        "two packages share a folder name"
    )


@pytest.fixture
def workspace_with_example(tmp_path: Path) -> Path:
    """The tracked workspace copied to tmp_path, plus services/example (no edit elsewhere)."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    copy = tmp_path / "ws"
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    example = copy / "services" / "example"
    (example / "src" / "genstack" / "example").mkdir(parents=True)
    (example / "tests").mkdir()
    (example / "pyproject.toml").write_text(EXAMPLE_PYPROJECT)
    (example / "src" / "genstack" / "example" / "__init__.py").write_text(
        '"""An example service."""\n\n\ndef answer() -> int:\n    return 42\n'
    )
    (example / "tests" / "test_example.py").write_text(EXAMPLE_TEST)
    return copy


@pytest.mark.skipif(not UV.exists(), reason="needs the Makefile's uv (make uv)")
@pytest.mark.timeout(120)
def test_a_new_service_folder_is_picked_up_without_editing(workspace_with_example: Path) -> None:
    ws = workspace_with_example
    make = ["make", "--no-print-directory", f"UV={UV}"]
    env = {**os.environ, "UV_OFFLINE": "1"}  # the lock and the cache have every dependency

    dry = subprocess.run(
        [*make, "-n", "test"], cwd=ws, capture_output=True, text=True, check=True, env=env
    ).stdout
    assert "uv sync --package genstack-example" in dry
    assert "-p genstack.example" in dry
    assert "services/example/tests" in dry

    # The lock takes the new member as it is; then its env builds and its test passes.
    # Online: uv.lock forks for chatterbox's pins ([tool.uv] conflicts), and re-resolving
    # the forks for other Pythons needs metadata a machine's cache does not hold.
    online = {k: v for k, v in env.items() if k != "UV_OFFLINE"}
    subprocess.run([UV, "lock"], cwd=ws, capture_output=True, check=True, env=online)
    assert 'name = "genstack-example"' in (ws / "uv.lock").read_text()
    run = subprocess.run(
        [*make, "env-example", "unit-example", "PYTEST_ARGS=-q"],
        cwd=ws,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
