"""Progress of a provisioning run: rich bars on a terminal, periodic log lines otherwise.

Containers log to a pipe, where a redrawn bar is noise; there the run logs one line every
``interval_s`` (overall bytes, rate, ETA, files) and one line per finished file.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["LogProgress", "NullProgress", "Progress", "RichProgress", "make_progress"]

log = logging.getLogger("genstack.provision")

ProgressMode = Literal["auto", "bar", "log", "off"]


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


class Progress(Protocol):
    """Called from many threads at once; implementations are thread-safe."""

    def begin(self, total_bytes: int, files: int, already: int = 0) -> None: ...
    def file_started(self, key: str, size: int | None, already: int) -> None: ...
    def advance(self, key: str, n: int) -> None: ...
    def file_rewound(self, key: str, n: int) -> None: ...
    def file_state(self, key: str, state: str) -> None: ...
    def file_done(self, key: str) -> None: ...
    def file_failed(self, key: str, reason: str) -> None: ...
    def close(self) -> None: ...


class NullProgress:
    def begin(self, total_bytes: int, files: int, already: int = 0) -> None:
        pass

    def file_started(self, key: str, size: int | None, already: int) -> None:
        pass

    def advance(self, key: str, n: int) -> None:
        pass

    def file_rewound(self, key: str, n: int) -> None:
        pass

    def file_state(self, key: str, state: str) -> None:
        pass

    def file_done(self, key: str) -> None:
        pass

    def file_failed(self, key: str, reason: str) -> None:
        pass

    def close(self) -> None:
        pass


class LogProgress:
    """One log line every ``interval_s`` while bytes move, one per finished/failed file."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._total = 0
        self._done = 0
        self._files = 0
        self._files_done = 0
        self._started = time.monotonic()
        self._base = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def begin(self, total_bytes: int, files: int, already: int = 0) -> None:
        with self._lock:
            self._total, self._files, self._done, self._base = total_bytes, files, already, already
            self._started = time.monotonic()
        log.info(
            "provisioning %d file(s), %s to fetch",
            files,
            human_bytes(total_bytes - already),
            extra={"files": files, "bytes_total": total_bytes, "bytes_present": already},
        )
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="provision-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.log_now()

    def log_now(self) -> None:
        with self._lock:
            done, total, base = self._done, self._total, self._base
            files_done, files = self._files_done, self._files
            elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = (done - base) / elapsed
        eta = (total - done) / rate if rate > 0 else float("inf")
        percent = 100.0 * done / total if total else 100.0
        log.info(
            "progress %s / %s (%.0f%%) %s/s eta %s, files %d/%d",
            human_bytes(done),
            human_bytes(total),
            percent,
            human_bytes(rate),
            "?" if eta == float("inf") else f"{eta:.0f}s",
            files_done,
            files,
            extra={"bytes_done": done, "bytes_total": total, "rate_bps": int(rate)},
        )

    def file_started(self, key: str, size: int | None, already: int) -> None:
        if already:
            log.info("resuming %s at %s", key, human_bytes(already))

    def advance(self, key: str, n: int) -> None:
        with self._lock:
            self._done += n

    def file_rewound(self, key: str, n: int) -> None:
        with self._lock:
            self._done -= n

    def file_state(self, key: str, state: str) -> None:
        log.info("%s: %s", key, state)

    def file_done(self, key: str) -> None:
        with self._lock:
            self._files_done += 1
        log.info("verified %s", key)

    def file_failed(self, key: str, reason: str) -> None:
        log.error("failed %s: %s", key, reason)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self.log_now()


class RichProgress:
    """An overall bar and one bar per file in flight (rich, on a terminal: stderr)."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console as RichConsole
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TaskID,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichBars

        self._bars = RichBars(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console or RichConsole(stderr=True),
            transient=False,
            refresh_per_second=5,
        )
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskID] = {}
        self._overall: TaskID | None = None

    def begin(self, total_bytes: int, files: int, already: int = 0) -> None:
        with self._lock:
            if self._overall is None:
                self._bars.start()
                self._overall = self._bars.add_task(f"total ({files} files)", total=total_bytes)
            self._bars.update(self._overall, total=total_bytes, completed=already)

    def file_started(self, key: str, size: int | None, already: int) -> None:
        with self._lock:
            name = key if len(key) <= 48 else "…" + key[-47:]
            self._tasks[key] = self._bars.add_task(name, total=size, completed=already)

    def advance(self, key: str, n: int) -> None:
        task = self._tasks.get(key)
        if task is not None:
            self._bars.advance(task, n)
        if self._overall is not None:
            self._bars.advance(self._overall, n)

    def file_rewound(self, key: str, n: int) -> None:
        self.advance(key, -n)

    def file_state(self, key: str, state: str) -> None:
        task = self._tasks.get(key)
        if task is not None:
            name = key if len(key) <= 36 else "…" + key[-35:]
            self._bars.update(task, description=f"{name} [{state}]")

    def file_done(self, key: str) -> None:
        with self._lock:
            task = self._tasks.pop(key, None)
        if task is not None:
            self._bars.remove_task(task)
        self._bars.console.print(f"[green]verified[/green] {key}")

    def file_failed(self, key: str, reason: str) -> None:
        with self._lock:
            task = self._tasks.pop(key, None)
        if task is not None:
            self._bars.remove_task(task)
        self._bars.console.print(f"[red]failed[/red] {key}: {reason}")

    def close(self) -> None:
        if self._overall is not None:
            self._bars.stop()


def make_progress(mode: ProgressMode = "auto", interval_s: float = 10.0) -> Progress:
    if mode == "off":
        return NullProgress()
    if mode == "bar" or (mode == "auto" and sys.stderr.isatty()):
        return RichProgress()
    return LogProgress(interval_s)
