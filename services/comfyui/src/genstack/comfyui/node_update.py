"""``UPDATE_NODES_ON_START=true``: move each custom node to the tip of the branch it follows, and
keep the move only if the node still installs and loads.

The seed ran ``git pull`` and ``pip install -r requirements.txt || true`` in every node, so a
node that broke upstream was kept broken without a word. Here, for each git checkout under
COMFYUI_DIR/custom_nodes (in name order):

1. **Left as it is**, with a warning, when it has uncommitted changes to tracked files, a
   detached HEAD or a branch without an upstream, is ahead of its upstream (local commits) or
   has diverged from it. Otherwise its upstream branch is fetched and fast-forwarded to: what
   ``git pull --ff-only`` does, spelled out so that each of those cases is told apart.
2. Its ``requirements.txt``, when the fast-forward changed it, is installed by COMFYUI_PYTHON
   (``-m pip``, or ``uv pip`` where that venv has no pip) with COMFYUI_CONSTRAINTS. Only when
   changed: the image installed every node's requirements in one resolve, so an unchanged file
   has nothing new to bring, and skipping pip keeps a start fast.
3. A fetch, fast-forward or install that fails **rolls the node back** (``git reset --hard``) to
   the commit it had, logged as an error with the failure's last lines.

Then, if any node moved, import_check.py loads ComfyUI and every node as a start does (by
path, with COMFYUI_PYTHON); a moved node that fails to load is rolled back the same way, and the
check runs once more to confirm that the previous versions load. Packages that a rolled-back
node's install added stay in the venv (pip cannot undo an install); that second check is what
finds a node they broke. Nothing here stops the start: ComfyUI starts with what loads.

Every subprocess has a timeout (COMFYUI_NODE_*_TIMEOUT_S), git never prompts for a password,
and credentials in URLs are masked in whatever output is logged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from genstack.comfyui.settings import ComfyUISettings

log = logging.getLogger(__name__)

IMPORT_CHECK = Path(__file__).with_name("import_check.py")
# user:password@ or token@ in a URL (a remote, an index URL in pip's output).
_CREDENTIALS = re.compile(r"(?<=://)[^/\s@]+@")
_TAIL_LINES = 15
_TAIL_CHARS = 3000


class Outcome(StrEnum):
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    ROLLED_BACK = "rolled back"
    LEFT = "left as it is"


@dataclass
class NodeResult:
    name: str
    path: Path
    outcome: Outcome
    old: str | None = None
    new: str | None = None
    detail: str = ""
    requirements_installed: bool = False


@dataclass
class UpdateReport:
    nodes: list[NodeResult] = field(default_factory=list)

    def named(self, outcome: Outcome) -> list[str]:
        return [node.name for node in self.nodes if node.outcome is outcome]

    def by_name(self) -> dict[str, NodeResult]:
        return {node.name: node for node in self.nodes}


class StepError(Exception):
    """One git, pip or import-check step failed; the message says which and how."""


def mask(text: str) -> str:
    return _CREDENTIALS.sub("***@", text)


def tail(text: str) -> str:
    """The last lines of a command's output, credentials masked: what a log line can carry."""
    lines = text.strip().splitlines()[-_TAIL_LINES:]
    return mask("\n".join(lines)[-_TAIL_CHARS:])


def short(commit: str | None) -> str:
    return (commit or "?")[:12]


@dataclass
class NodeUpdater:
    comfyui_dir: Path
    python: Path
    constraints: Path
    git_timeout_s: float
    install_timeout_s: float
    check_timeout_s: float
    _installer: list[str] | str | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: ComfyUISettings) -> NodeUpdater:
        return cls(
            comfyui_dir=settings.comfyui_dir,
            python=settings.comfyui_python,
            constraints=settings.comfyui_constraints,
            git_timeout_s=settings.comfyui_node_git_timeout_s,
            install_timeout_s=settings.comfyui_node_install_timeout_s,
            check_timeout_s=settings.comfyui_node_check_timeout_s,
        )

    # --- running things ---------------------------------------------------------------------

    def _run(
        self,
        argv: Sequence[str | Path],
        *,
        timeout: float,
        cwd: Path | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run with a timeout, output captured (stderr into stdout, in order). ``check``: a
        non-zero exit raises StepError with the output's tail."""
        env = {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",  # a repository gone private fails instead of hanging
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
        }
        args = [str(a) for a in argv]
        what = " ".join(args[:4])
        try:
            # Its own process group, so a timeout kills what it started too (pip's build
            # backends, git's remote helpers), which would otherwise hold the output pipe open.
            with subprocess.Popen(  # noqa: S603 - argv built here, never through a shell
                args,
                cwd=cwd,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ) as process:
                try:
                    output, _ = process.communicate(timeout=timeout)
                except subprocess.TimeoutExpired as exc:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.communicate()
                    raise StepError(f"`{what} ...` timed out after {timeout:g}s") from exc
        except OSError as exc:
            raise StepError(f"`{what} ...` could not run: {exc}") from exc
        done = subprocess.CompletedProcess(args, process.returncode, output)
        if check and done.returncode != 0:
            raise StepError(f"`{what} ...` exited {done.returncode}:\n{tail(done.stdout)}")
        return done

    def _git(self, node: Path, *args: str, check: bool = True) -> str:
        done = self._run(["git", "-C", node, *args], timeout=self.git_timeout_s, check=check)
        return done.stdout.strip() if done.returncode == 0 else ""

    def _git_ok(self, node: Path, *args: str) -> bool:
        done = self._run(["git", "-C", node, *args], timeout=self.git_timeout_s, check=False)
        return done.returncode == 0

    def installer(self) -> list[str] | str:
        """The head of the install command (``python -m pip install`` or ``uv pip install
        --python python``), or a sentence saying why there is none. Asked once per start."""
        if self._installer is None:
            try:
                self._run([self.python, "-m", "pip", "--version"], timeout=self.install_timeout_s)
                self._installer = [str(self.python), "-m", "pip", "install"]
            except StepError as no_pip:
                uv = shutil.which("uv")
                self._installer = (
                    [uv, "pip", "install", "--python", str(self.python)]
                    if uv
                    else f"COMFYUI_PYTHON={self.python} has no pip ({no_pip}) and uv is not "
                    "on PATH, so requirements cannot be installed"
                )
        return self._installer

    # --- one node ---------------------------------------------------------------------------

    def _upstream(self, node: Path) -> tuple[str, str] | str:
        """(remote, ref) the current branch follows, or why the node is left as it is."""
        if self._git(node, "status", "--porcelain", "--untracked-files=no"):
            return "it has local changes to tracked files"
        branch = self._git(node, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        if not branch:
            return "its HEAD is detached: no branch to follow"
        remote = self._git(node, "config", f"branch.{branch}.remote", check=False)
        ref = self._git(node, "config", f"branch.{branch}.merge", check=False)
        if not remote or not ref:
            return f"its branch {branch} has no upstream (git branch --set-upstream-to)"
        return remote, ref

    def _rollback(self, result: NodeResult, failure: str, details: str) -> NodeResult:
        """Reset the node to the commit it had; log ``failure`` (a phrase) and ``details`` (the
        output's tail) as an error either way."""
        node, old = result.path, result.old or "HEAD"
        try:
            self._git(node, "reset", "--hard", "--quiet", old)
        except StepError as exc:
            log.error(  # noqa: TRY400 - the failure is the message, not a traceback
                "custom node %s: %s, and the roll-back to %s failed too (%s), so the node is in "
                "an unknown state:\n%s",
                result.name,
                failure,
                short(old),
                exc,
                details,
            )
        else:
            log.error(
                "custom node %s: %s, rolled back to %s (the previous version is kept):\n%s",
                result.name,
                failure,
                short(old),
                details,
            )
        result.outcome, result.detail = Outcome.ROLLED_BACK, f"{failure}: {details}"
        return result

    def _install(self, node: Path) -> None:
        head = self.installer()
        if isinstance(head, str):
            raise StepError(head)
        self._run(
            [*head, "--requirement", "requirements.txt", "--constraint", self.constraints],
            cwd=node,  # relative paths in the file mean the node's folder, for pip and uv
            timeout=self.install_timeout_s,
        )

    def update(self, node: Path) -> NodeResult:
        """Fast-forward one checkout and install what its update changed; roll back on a
        failure. The import check comes later, over every node at once."""
        result = NodeResult(node.name, node, Outcome.LEFT)
        try:
            result.old = self._git(node, "rev-parse", "HEAD")
            upstream = self._upstream(node)
        except StepError as exc:
            result.detail = f"not a usable git checkout: {exc}"
            log.warning("custom node %s: left as it is, %s", node.name, result.detail)
            return result
        if isinstance(upstream, str):
            result.detail = upstream
            log.warning(
                "custom node %s: left as it is at %s, %s", node.name, short(result.old), upstream
            )
            return result
        remote, ref = upstream
        step = "fetch"
        try:
            self._git(node, "fetch", "--quiet", "--no-tags", remote, ref)
            result.new = self._git(node, "rev-parse", "FETCH_HEAD")
            if result.new == result.old:
                result.outcome = Outcome.UNCHANGED
                log.info("custom node %s: up to date at %s", node.name, short(result.old))
                return result
            if not self._git_ok(node, "merge-base", "--is-ancestor", result.old, result.new):
                ahead = self._git_ok(node, "merge-base", "--is-ancestor", result.new, result.old)
                result.detail = (
                    "it is ahead of its upstream (local commits)"
                    if ahead
                    else f"it has diverged from its upstream ({short(result.new)})"
                )
                result.new = None
                log.warning(
                    "custom node %s: left as it is at %s, %s",
                    node.name,
                    short(result.old),
                    result.detail,
                )
                return result
            step = "fast-forward"
            self._git(node, "merge", "--ff-only", "--quiet", result.new)
            log.info("custom node %s: %s -> %s", node.name, short(result.old), short(result.new))
            changed = not self._git_ok(
                node, "diff", "--quiet", result.old, result.new, "--", "requirements.txt"
            )
            if changed and (node / "requirements.txt").is_file():
                step = "requirements install"
                log.info("custom node %s: requirements.txt changed, installing it", node.name)
                self._install(node)
                result.requirements_installed = True
        except StepError as exc:
            return self._rollback(result, f"{step} failed", str(exc))
        result.outcome = Outcome.UPDATED
        return result

    # --- the import check -------------------------------------------------------------------

    def import_check(self) -> dict[str, Any]:
        """import_check.py's report for COMFYUI_DIR as it is now; StepError when the check
        itself could not finish (ComfyUI failed to load, or the timeout)."""
        with tempfile.TemporaryDirectory(prefix="genstack-import-check-") as scratch:
            report = Path(scratch) / "report.json"
            done = self._run(
                [self.python, IMPORT_CHECK, self.comfyui_dir, report, Path(scratch) / "comfyui"],
                cwd=self.comfyui_dir,
                timeout=self.check_timeout_s,
                check=False,
            )
            if not report.is_file():
                raise StepError(
                    f"the import check wrote no report (exit {done.returncode}):\n"
                    f"{tail(done.stdout)}"
                )
            loaded: dict[str, Any] = json.loads(report.read_text())
        if loaded.get("error"):
            raise StepError(f"the import check could not load ComfyUI: {tail(loaded['error'])}")
        return loaded

    def _check_moved(self, moved: list[NodeResult]) -> list[NodeResult]:
        """Run the import check; roll back each moved node that fails. Returns those."""
        names = ", ".join(n.name for n in moved)
        log.info(
            "import check of ComfyUI with the updated nodes (%s), up to %gs",
            names,
            self.check_timeout_s,
        )
        try:
            loaded = self.import_check()
        except StepError as exc:
            failure = "the import check did not finish, so the update cannot be trusted"
            return [self._rollback(n, failure, str(exc)) for n in moved]
        failed: dict[str, str] = loaded["failed"]
        rolled = [
            self._rollback(n, "fails to load after the update", tail(failed[n.name]))
            for n in moved
            if n.name in failed
        ]
        moved_names = {n.name for n in moved}
        for name, why in failed.items():
            if name not in moved_names:
                log.error(
                    "custom node %s fails to load (this start did not update it): %s",
                    name,
                    tail(why),
                )
        for message in loaded["other_failures"]:
            log.error("ComfyUI itself reports an import failure: %s", tail(message))
        return rolled

    def _confirm(self, rolled: list[NodeResult]) -> None:
        """After roll-backs, check that the previous versions load again."""
        log.info("import check after rolling back %s", ", ".join(n.name for n in rolled))
        try:
            failed: dict[str, str] = self.import_check()["failed"]
        except StepError as exc:
            log.error("ComfyUI does not load even with the rolled-back nodes: %s", exc)  # noqa: TRY400
            return
        for node in rolled:
            if node.name in failed:
                installed = (
                    " (its update's requirements stay installed and may be the cause)"
                    if node.requirements_installed
                    else ""
                )
                log.error(
                    "custom node %s still fails to load after the roll-back%s: %s",
                    node.name,
                    installed,
                    tail(failed[node.name]),
                )

    # --- all nodes --------------------------------------------------------------------------

    def checkouts(self) -> list[Path]:
        folder = self.comfyui_dir / "custom_nodes"
        if not folder.is_dir():
            return []
        # ComfyUI skips *.disabled folders; so does the update.
        return sorted(
            p
            for p in folder.iterdir()
            if p.is_dir() and (p / ".git").exists() and not p.name.endswith(".disabled")
        )

    def run(self) -> UpdateReport:
        report = UpdateReport()
        nodes = self.checkouts()
        log.info(
            "UPDATE_NODES_ON_START: updating %d custom node checkouts in %s",
            len(nodes),
            self.comfyui_dir / "custom_nodes",
        )
        for node in nodes:
            report.nodes.append(self.update(node))
        moved = [n for n in report.nodes if n.outcome is Outcome.UPDATED]
        if moved:
            rolled = self._check_moved(moved)
            if rolled:
                self._confirm(rolled)
        summary = {o: report.named(o) for o in Outcome}
        log.info(
            "custom nodes: %s",
            "; ".join(
                f"{len(v)} {o.value}" + (f" ({', '.join(v)})" if v else "")
                for o, v in summary.items()
            ),
        )
        return report


def update_custom_nodes(settings: ComfyUISettings) -> UpdateReport:
    return NodeUpdater.from_settings(settings).run()
