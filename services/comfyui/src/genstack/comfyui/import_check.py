"""Load ComfyUI and every custom node the way a start does, and say which node failed and why.

ComfyUI's own ``main.py --quick-test-for-ci`` loads everything a real start loads (core extras,
API nodes, every folder in ``custom_nodes/`` through ``nodes.load_custom_node``) and exits 0
whatever failed: a failure is only a log line. This module runs it in-process and reads those
lines (ComfyUI 0.3.64's wording)::

    Cannot import <path> module for custom nodes: <exception>    (after the traceback)
       0.1 seconds (IMPORT FAILED): <path>                       (the import-times table)
    IMPORT FAILED: <file>                                        (core extras, API nodes)

It runs with ComfyUI's interpreter and imports nothing but the standard library, so ComfyUI's
venv needs no genstack. Two users:

- the image build (``nodes_lock.py check`` in services/comfyui/Dockerfile, which copies this
  file beside it and imports :func:`quick_test`), and
- ``genstack-comfyui start`` with ``UPDATE_NODES_ON_START=true``, which runs this file by path::

      COMFYUI_PYTHON import_check.py COMFYUI_DIR REPORT.json SCRATCH_DIR

  and reads the JSON report (:func:`main`). Exit 0: the report is written, whatever failed in
  it; 1: ComfyUI itself did not get through the quick test (the report says why).
"""

from __future__ import annotations

import json
import logging
import os
import re
import runpy
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The import-times table ComfyUI logs after loading custom nodes: one line per module path.
_TABLE_LINE = re.compile(r"^\s*[\d.]+ seconds( \(IMPORT FAILED\))?: (.+)$")
_FAILURE_WORDS = ("IMPORT FAILED", "Cannot import")


@dataclass
class QuickTest:
    """What one quick test loaded. ``failed`` and ``registered`` are keyed by the custom node's
    name (its folder, or file without .py, under custom_nodes)."""

    registry: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    registered: dict[str, int] = field(default_factory=dict)
    other_failures: list[str] = field(default_factory=list)
    error: str | None = None

    def report(self) -> dict[str, Any]:
        return {
            "node_classes": len(self.registry),
            "failed": self.failed,
            "registered": self.registered,
            "other_failures": self.other_failures,
            "error": self.error,
        }


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelno, record.getMessage()))


def _node_name(module_path: str) -> str:
    base = os.path.basename(module_path.rstrip("/\\"))
    return base[:-3] if base.endswith(".py") else base


def _mentions(message: str, path: str) -> bool:
    # custom_nodes/foo must not match custom_nodes/foobar.
    return re.search(re.escape(path) + r"(?![\w.-])", message) is not None


def _read(records: list[tuple[int, str]], result: QuickTest) -> None:
    loaded: dict[str, bool] = {}
    for _, message in records:
        for line in message.splitlines():
            row = _TABLE_LINE.match(line)
            if row:
                loaded[row.group(2).strip()] = row.group(1) is None
    warnings = [m for level, m in records if level >= logging.WARNING]
    failed_paths = [path for path, ok in loaded.items() if not ok]
    for path in failed_paths:
        why = [m.strip() for m in warnings if _mentions(m, path)]
        result.failed[_node_name(path)] = (
            "\n".join(why) or "ComfyUI marked it IMPORT FAILED and logged no reason"
        )
    for message in warnings:
        if any(word in message for word in _FAILURE_WORDS) and not any(
            _mentions(message, path) for path in failed_paths
        ):
            result.other_failures.append(message.strip())
    for cls in result.registry.values():
        module = getattr(cls, "RELATIVE_PYTHON_MODULE", "")
        if module.startswith("custom_nodes."):
            name = module.removeprefix("custom_nodes.")
            result.registered[name] = result.registered.get(name, 0) + 1
    for path, ok in loaded.items():
        if ok:
            result.registered.setdefault(_node_name(path), 0)


def quick_test(comfyui_dir: Path, scratch: Path) -> QuickTest:
    """Run ``main.py --quick-test-for-ci --cpu`` from ``comfyui_dir`` in this process (ComfyUI
    then stays imported: one call per process). ComfyUI's user, temp, input and output folders
    go under ``scratch``, so the check writes nothing into the checkout's own."""
    result = QuickTest()
    collect = _Collect()
    logging.getLogger().addHandler(collect)
    for folder in ("user", "input", "output"):
        (scratch / folder).mkdir(parents=True, exist_ok=True)
    os.chdir(comfyui_dir)
    sys.path.insert(0, str(comfyui_dir))
    sys.argv = [
        "main.py",
        "--quick-test-for-ci",
        "--cpu",
        "--user-directory",
        str(scratch / "user"),
        "--temp-directory",
        str(scratch),
        "--input-directory",
        str(scratch / "input"),
        "--output-directory",
        str(scratch / "output"),
        "--database-url",
        "sqlite:///:memory:",
    ]
    try:
        runpy.run_path("main.py", run_name="__main__")
    except SystemExit as stop:
        if stop.code not in (0, None):
            result.error = f"ComfyUI's quick test exited with {stop.code}"
    except Exception:  # whatever ComfyUI raised goes into the report
        result.error = "ComfyUI raised before its quick test finished:\n" + traceback.format_exc()
    else:
        result.error = "main.py --quick-test-for-ci returned instead of exiting"
    nodes = sys.modules.get("nodes")
    result.registry = dict(getattr(nodes, "NODE_CLASS_MAPPINGS", None) or {})
    if result.error is None and nodes is None:
        result.error = "ComfyUI's quick test ran but no `nodes` module was loaded"
    _read(collect.records, result)
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: import_check.py COMFYUI_DIR REPORT.json SCRATCH_DIR", file=sys.stderr)
        return 2
    comfyui_dir, report, scratch = (Path(a).resolve() for a in args)
    # Run by path, this file's folder (genstack/comfyui, which has its own settings.py and
    # client.py) is first on sys.path; ComfyUI and its nodes must not import those.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != here]
    result = quick_test(comfyui_dir, scratch)
    report.write_text(json.dumps(result.report(), indent=1))
    return 1 if result.error else 0


if __name__ == "__main__":
    # os._exit: ComfyUI leaves non-daemon threads behind (its asyncio loop, model management)
    # that could keep a finished check alive; the report is written and flushed by now.
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
