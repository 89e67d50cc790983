"""Which files may be uploaded, and under which key.

Every path, whether from a producer's task or from the watcher, is resolved (symlinks
followed) and must land inside one of the allowed roots: OUTPUT_DIR or a folder of
UPLOAD_WATCH_DIRS. A symlink that points outside, a directory or a missing file is refused.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

# Names that are never finished outputs: editors' and downloaders' partial files.
TEMPORARY_GLOBS = ("*.tmp", "*.temp", "*.part", "*.partial", "*.crdownload", "*.swp", "*~", "~*")


class PathRefusedError(ValueError):
    """The path may not be uploaded; retrying cannot help."""


@dataclass(frozen=True)
class ResolvedPath:
    real: Path  # symlinks resolved; what is opened
    root: Path  # the allowed root it lies in (resolved)
    relative: str  # POSIX path relative to that root
    root_index: int  # 0 = OUTPUT_DIR, 1.. = UPLOAD_WATCH_DIRS


class AllowedRoots:
    def __init__(self, roots: list[Path], extensions: list[str]) -> None:
        if not roots:
            raise ValueError("at least one root folder is needed")
        self.configured = roots
        self.roots = [Path(os.path.realpath(root)) for root in roots]
        self.extensions = {ext.lower() for ext in extensions}

    def resolve(self, path: str | Path) -> ResolvedPath:
        given = Path(path)
        if not given.is_absolute():
            raise PathRefusedError(f"path must be absolute: {str(path)!r}")
        real = Path(os.path.realpath(given))
        for index, root in enumerate(self.roots):  # noqa: B007 - used after the loop
            if real == root or root in real.parents:
                break
        else:
            where = "points outside" if given.is_symlink() else "is outside"
            raise PathRefusedError(
                f"{given} {where} the upload folders ({', '.join(map(str, self.configured))})"
            )
        if not real.exists():
            raise PathRefusedError(f"{given} does not exist")
        if not real.is_file():
            raise PathRefusedError(f"{given} is not a regular file")
        relative = real.relative_to(root).as_posix()
        return ResolvedPath(real=real, root=root, relative=relative, root_index=index)

    def wanted(self, relative: str) -> bool:
        """Is this a finished output the watcher should upload (by name only)?"""
        parts = relative.split("/")
        if any(part.startswith(".") for part in parts):
            return False
        name = parts[-1]
        if any(fnmatch.fnmatch(name, glob) for glob in TEMPORARY_GLOBS):
            return False
        _, dot, ext = name.rpartition(".")
        return bool(dot) and ext.lower() in self.extensions

    def watched_key_path(self, resolved: ResolvedPath) -> str:
        """Relative key path of a watched file; files of extra roots keep their root's name,
        so two roots with the same relative path never collide."""
        if resolved.root_index == 0:
            return resolved.relative
        return f"{self.roots[resolved.root_index].name}/{resolved.relative}"

    def job_key_path(self, resolved: ResolvedPath, job_id: str) -> str:
        """``<job-id>/<name>``; a file under ``OUTPUT_DIR/<job-id>/`` keeps its sub-path, so
        a job's files get the same key whether the producer or the watcher queued them."""
        prefix = f"{job_id}/"
        if resolved.root_index == 0 and resolved.relative.startswith(prefix):
            return resolved.relative
        return f"{job_id}/{resolved.real.name}"
