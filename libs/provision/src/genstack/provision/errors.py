"""What provisioning raises; every message names the file or variable at fault."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ChecksumError",
    "DiskSpaceError",
    "DownloadError",
    "DownloadInterruptedError",
    "ProvisionError",
    "SourceError",
    "VariableError",
]


class ProvisionError(RuntimeError):
    """Base class: provisioning cannot complete; the message says why and what to do."""


class VariableError(ProvisionError, ValueError):
    """An environment variable the manifest reads has a value it does not accept."""


class SourceError(ProvisionError):
    """A source could not be resolved (not found, gated, no access, bad answer)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class DiskSpaceError(ProvisionError):
    """The plan does not fit the free disk; raised before the first byte is fetched."""


class ChecksumError(ProvisionError):
    """A file's sha256 (or size) did not match after every allowed re-download."""

    def __init__(self, key: str, expected: str, got: str, attempts: int) -> None:
        self.reason = (
            f"sha256 mismatch after {attempts} download(s): expected {expected}, "
            f"got {got} (the source serves other bytes than the manifest or hub says)"
        )
        super().__init__(f"{key}: {self.reason}")
        self.key = key
        self.expected = expected
        self.got = got


class DownloadError(ProvisionError):
    """One or more files could not be fetched; ``failures`` maps each to its reason."""

    def __init__(self, failures: Sequence[tuple[str, str]]) -> None:
        self.failures = list(failures)
        lines = "\n".join(f"  - {key}: {reason}" for key, reason in self.failures)
        super().__init__(f"{len(self.failures)} file(s) could not be provisioned:\n{lines}")


class DownloadInterruptedError(ProvisionError):
    """Stopped on request (SIGTERM/SIGINT); partial files are kept and resume next time."""
