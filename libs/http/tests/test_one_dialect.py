"""One error dialect: the status -> type map, ``ApiError`` and ``error_body`` exist once, in
genstack.http. Two copies had drifted apart before (the gateway and the TTS servers
answered the same mistake differently through one API); this fails if a second appears in
the source of any library or service."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HOME = ROOT / "libs" / "http" / "src" / "genstack" / "http"


def sources() -> list[Path]:
    found = [
        path
        for pattern in ("libs/*/src/**/*.py", "services/*/src/**/*.py")
        for path in ROOT.glob(pattern)
    ]
    assert len(found) > 50, "the scan found too few files to be looking in the right place"
    return found


def _is_error_type(node: ast.expr | None) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.endswith("_error")
    )


def definitions(path: Path) -> list[str]:
    """What in ``path`` would be a second copy of the dialect, as 'file:line what'."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = path.relative_to(ROOT)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "ApiError":
            found.append(f"{where}:{node.lineno} class ApiError")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in (
            "error_body",
            "error_type",
        ):
            found.append(f"{where}:{node.lineno} def {node.name}")
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == 401 and _is_error_type(value):
                    found.append(f"{where}:{node.lineno} a status -> error type map")
    return found


def test_the_scan_finds_the_one_copy_in_genstack_http() -> None:
    home = [d for path in HOME.glob("*.py") for d in definitions(path)]
    assert any("class ApiError" in d for d in home), home
    assert any("def error_body" in d for d in home), home
    assert any("status -> error type map" in d for d in home), home


def test_no_second_error_dialect_anywhere_else() -> None:
    elsewhere = [
        found for path in sources() if HOME not in path.parents for found in definitions(path)
    ]
    assert elsewhere == [], "import these from genstack.http.errors instead:\n" + "\n".join(
        elsewhere
    )
