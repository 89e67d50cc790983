"""Reading the end of a server's log file, for error messages that explain a failure."""

from __future__ import annotations

from pathlib import Path

__all__ = ["tail"]


def tail(path: Path, max_lines: int = 40, max_bytes: int = 64 * 1024) -> str:
    """Return the last ``max_lines`` lines of ``path`` ('' when it does not exist).

    Only the last ``max_bytes`` are read: chatty servers write megabytes of access log.
    """
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except FileNotFoundError:
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(lines[-max_lines:])
