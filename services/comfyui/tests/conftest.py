from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from genstack.testing.comfyui_replay import ComfyReplay

# Exchanges recorded from a real ComfyUI (`genstack-comfyui record`), replayed by ComfyReplay.
RECORDINGS = Path(__file__).parent / "recordings"


@pytest.fixture
def replay(tmp_path: Path) -> Iterator[ComfyReplay]:
    stand_in = ComfyReplay(tmp_path / "outputs", RECORDINGS).start()
    try:
        yield stand_in
    finally:
        stand_in.stop()


# --- custom node checkouts and a ComfyUI stand-in, for UPDATE_NODES_ON_START -------------------


def git(path: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


class Upstream:
    """A node's upstream: a bare repository on the local disk (what `origin` points at), and
    an author's clone that commits and pushes to it."""

    def __init__(self, root: Path, name: str, files: dict[str, str]) -> None:
        self.bare = root / "upstream" / f"{name}.git"
        self.author = root / "author" / name
        self.bare.mkdir(parents=True)
        git(self.bare, "init", "--quiet", "--bare", "--initial-branch=main")
        self.author.mkdir(parents=True)
        git(self.author, "init", "--quiet", "--initial-branch=main")
        git(self.author, "remote", "add", "origin", str(self.bare))
        self.first = self.commit(files)

    def commit(self, files: dict[str, str | None]) -> str:
        """Write (None: delete) files, commit, push; returns the new commit."""
        for name, text in files.items():
            if text is None:
                (self.author / name).unlink()
            else:
                (self.author / name).write_text(text)
        git(self.author, "add", "--all")
        git(self.author, "commit", "--quiet", "-m", f"change {', '.join(files)}")
        git(self.author, "push", "--quiet", "origin", "main")
        return git(self.author, "rev-parse", "HEAD")

    def clone_into(self, custom_nodes: Path, name: str) -> Path:
        """A normal clone, on main following origin/main (what a person's `git clone` makes)."""
        custom_nodes.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "clone", "--quiet", str(self.bare), str(custom_nodes / name)],
            check=True,
            capture_output=True,
        )
        return custom_nodes / name


def node_source(class_name: str, body: str = "") -> str:
    """A custom node's __init__.py registering one node class; ``body`` runs first."""
    return (
        f"{body}\n"
        f"class {class_name}:\n"
        "    @classmethod\n"
        "    def INPUT_TYPES(cls):\n"
        '        return {"required": {}}\n'
        "    RETURN_TYPES = ()\n"
        '    FUNCTION = "run"\n'
        '    CATEGORY = "genstack-test"\n'
        "    def run(self):\n"
        "        return ()\n"
        f'NODE_CLASS_MAPPINGS = {{"{class_name}": {class_name}}}\n'
    )


# ComfyUI 0.3.64's main.py --quick-test-for-ci reduced to what import_check.py reads: every
# folder in custom_nodes loaded as nodes.load_custom_node loads it, with the same log lines for
# a failure and the same import-times table, and a `nodes` module holding NODE_CLASS_MAPPINGS.
# A file named SLOW in the checkout makes it hang (the check's timeout); BROKEN makes it raise.
FAKE_MAIN = """
import importlib.util, logging, os, sys, time, traceback, types

root = logging.getLogger()
root.setLevel(logging.INFO)
root.addHandler(logging.StreamHandler())
if os.path.exists("SLOW"):
    time.sleep(60)
if os.path.exists("BROKEN"):
    raise RuntimeError("ComfyUI itself is broken")
nodes = types.ModuleType("nodes")
nodes.NODE_CLASS_MAPPINGS = {"SaveImage": type("SaveImage", (), {})}
sys.modules["nodes"] = nodes
folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "custom_nodes")
times = []
for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    if name == "__pycache__" or name.endswith(".disabled"):
        continue
    ok = False
    try:
        spec = importlib.util.spec_from_file_location(path, os.path.join(path, "__init__.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[path] = module
        spec.loader.exec_module(module)
        if getattr(module, "NODE_CLASS_MAPPINGS", None) is not None:
            for key, cls in module.NODE_CLASS_MAPPINGS.items():
                cls.RELATIVE_PYTHON_MODULE = "custom_nodes." + name
                nodes.NODE_CLASS_MAPPINGS[key] = cls
            ok = True
        else:
            logging.warning(f"Skip {path} module for custom nodes due to the lack of "
                            "NODE_CLASS_MAPPINGS or NODES_LIST (need one).")
    except Exception as e:
        logging.warning(traceback.format_exc())
        logging.warning(f"Cannot import {path} module for custom nodes: {e}")
    times.append((0.0, path, ok))
logging.info("\\nImport times for custom nodes:")
for t, path, ok in sorted(times):
    logging.info("{:6.1f} seconds{}: {}".format(t, "" if ok else " (IMPORT FAILED)", path))
if "--quick-test-for-ci" in sys.argv:
    sys.exit(0)
"""


@pytest.fixture
def fake_comfyui(tmp_path: Path) -> Path:
    """A ComfyUI checkout whose main.py is FAKE_MAIN, with an empty custom_nodes folder."""
    folder = tmp_path / "ComfyUI"
    (folder / "custom_nodes").mkdir(parents=True)
    (folder / "main.py").write_text(FAKE_MAIN)
    return folder


def tiny_wheel(folder: Path, name: str = "genstack_tiny", version: str = "0.1") -> Path:
    """A pure-Python wheel built by hand (a zip with dist-info): installing it needs no index."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "VALUE = 1\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: genstack-tests\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return wheel


@pytest.fixture(scope="session")
def pip_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with pip (python -m venv), like the image's ComfyUI venv; tests install into it
    from local wheels only (PIP_NO_INDEX)."""
    venv = tmp_path_factory.mktemp("pip-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    return venv / "bin" / "python"
