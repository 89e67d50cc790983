"""Input files: by URL, fetched behind the SSRF guard (no private, loopback or link-local
address unless COMFYUI_INPUT_ALLOW_NETWORKS lets it through) with a size limit, a time limit
and a content check (genstack.core.remote_files, shared with the gateway); by object key, read
from storage. Either way before they are uploaded to ComfyUI's input folder."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path, PurePosixPath

from genstack.core.remote_files import (
    FetchedInput,
    InputError,
    InputFetcher,
    UnsafeUrlError,
    safe_name,
)
from genstack.core.storage import Storage, StorageError

__all__ = [
    "FetchedInput",
    "InputError",
    "InputFetcher",
    "StoredInputs",
    "UnsafeUrlError",
    "VoiceFiles",
]


class StoredInputs:
    """Inputs by object key: an earlier job's artifact, or what the gateway stored from a URL
    or an upload at submission (it fetched and checked it there), read from storage."""

    def __init__(self, storage: Storage, *, max_bytes: int) -> None:
        self.storage = storage
        self.max_bytes = max_bytes

    def read(self, key: str, kind: str, index: int = 0) -> FetchedInput:
        try:
            info = self.storage.head(key)
        except (StorageError, ValueError) as exc:
            raise InputError(f"stored file {key} cannot be read: {exc}") from exc
        if info is None:
            raise InputError(f"no stored file {key} (an artifact's key, or an http(s) URL)")
        if info.size > self.max_bytes:
            raise InputError(f"stored file {key} is larger than {self.max_bytes} bytes")
        content_type = info.content_type or "application/octet-stream"
        if not (content_type.startswith(f"{kind}/") or content_type == "application/octet-stream"):
            raise InputError(f"stored file {key} is {content_type}, not {kind}/*")
        fd, path = tempfile.mkstemp(prefix="genstack-input-")
        os.close(fd)
        try:
            self.storage.download(key, path)
            with open(path, "rb") as handle:
                data = handle.read(self.max_bytes + 1)
        except StorageError as exc:
            raise InputError(f"stored file {key} cannot be read: {exc}") from exc
        finally:
            os.unlink(path)
        name = safe_name(PurePosixPath(key).name) or "input"
        return FetchedInput(f"{index}-{name}", data, content_type)


class VoiceFiles:
    """Voices of the shared voice library (TTS_VOICES_DIR: ``<id>.wav``, the volume the
    speech servers keep their voices in), for a VibeVoice job naming a voice."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, voice_id: str, index: int = 0) -> FetchedInput:
        root = self.root.resolve()
        path = (root / f"{voice_id}.wav").resolve()
        if path.parent != root or not _SAFE_ID.match(voice_id):
            raise InputError(f"{voice_id!r} is not a voice id")
        if not path.is_file():
            raise InputError(f"no voice {voice_id!r} in the voice library ({self.root})")
        return FetchedInput(f"{index}-{voice_id}.wav", path.read_bytes(), "audio/wav")


_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
