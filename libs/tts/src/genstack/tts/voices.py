"""The voice library: reference audio stored under server-chosen ids in one folder.

A voice is ``<id>.wav`` (mono 16-bit PCM, decoded and validated on upload) plus
``<id>.json`` (its name and when it was made). A ``.wav`` dropped into the folder by hand
(xtts-api-server's speakers folder) is a voice too, under its file name, if that name is a
valid id. Ids are checked against a strict pattern and every path is resolved and checked to
be inside the folder, so no client-supplied value ever names a file elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tempfile
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genstack.tts.audio import encode_all
from genstack.tts.engine import Samples

VOICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
STORE_RATE = 24_000
_SLUG = re.compile(r"[^a-z0-9]+")


class VoiceLibraryError(Exception):
    """Base class; ``status`` is the HTTP status the error maps to."""

    status = 400


class InvalidVoiceIdError(VoiceLibraryError):
    status = 400


class VoiceNotFoundError(VoiceLibraryError):
    status = 404


class VoiceLibraryFullError(VoiceLibraryError):
    status = 409


class VoiceExistsError(VoiceLibraryError):
    status = 409


@dataclass(frozen=True)
class StoredVoice:
    id: str
    name: str
    created_at: int
    duration_s: float
    path: Path
    version: tuple[int, int]  # (mtime_ns, size): a replaced file is a new conditioning
    language: str | None = None  # what the voice speaks, where the uploader said

    def to_api(self) -> dict[str, object]:
        return {
            "id": self.id,
            "object": "audio.voice",
            "name": self.name,
            "created_at": self.created_at,
            "type": "audio_sample",
            "duration_s": round(self.duration_s, 3),
            "language": self.language,
        }


def is_valid_voice_id(value: str) -> bool:
    return bool(VOICE_ID.match(value))


def _slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return _SLUG.sub("-", ascii_name.lower()).strip("-")[:40]


def _wav_duration(path: Path) -> float:
    """Duration from the RIFF header (no full decode for a listing)."""
    with path.open("rb") as f:
        header = f.read(4096)
    if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return 0.0
    pos, rate, block = 12, 0, 0
    while pos + 8 <= len(header):
        chunk, size = header[pos : pos + 4], int.from_bytes(header[pos + 4 : pos + 8], "little")
        if chunk == b"fmt ":
            rate = int.from_bytes(header[pos + 12 : pos + 16], "little")
            block = int.from_bytes(header[pos + 20 : pos + 22], "little")
        elif chunk == b"data":
            data = min(size, path.stat().st_size - pos - 8)
            return data / (rate * block) if rate and block else 0.0
        pos += 8 + size + (size & 1)
    return 0.0


class VoiceLibrary:
    def __init__(self, root: Path, *, max_voices: int) -> None:
        self.root = root
        self.max_voices = max_voices
        self._lock = threading.Lock()

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, voice_id: str, suffix: str) -> Path:
        if not is_valid_voice_id(voice_id):
            raise InvalidVoiceIdError(
                "a voice id is 1-64 letters, digits, '_' or '-' (no paths or file names)"
            )
        root = self.root.resolve()
        path = (root / f"{voice_id}{suffix}").resolve()
        if path.parent != root:  # a symlink pointing out of the folder
            raise InvalidVoiceIdError("voice id resolves outside the voice folder")
        return path

    def get(self, voice_id: str) -> StoredVoice:
        path = self._path(voice_id, ".wav")
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise VoiceNotFoundError(f"voice {voice_id!r} not found") from None
        if not path.is_file():
            raise VoiceNotFoundError(f"voice {voice_id!r} not found")
        meta: dict[str, object] = {}
        with contextlib.suppress(FileNotFoundError, ValueError, OSError):
            loaded = json.loads(self._path(voice_id, ".json").read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                meta = loaded
        name = meta.get("name")
        created = meta.get("created_at")
        duration = meta.get("duration_s")
        language = meta.get("language")
        return StoredVoice(
            id=voice_id,
            name=name if isinstance(name, str) else voice_id,
            created_at=created if isinstance(created, int) else int(stat.st_mtime),
            duration_s=float(duration)
            if isinstance(duration, int | float)
            else _wav_duration(path),
            path=path,
            version=(stat.st_mtime_ns, stat.st_size),
            language=language if isinstance(language, str) else None,
        )

    def find(self, voice_id: str) -> StoredVoice | None:
        """The voice, or None when there is none by that (valid) id."""
        try:
            return self.get(voice_id)
        except VoiceNotFoundError:
            return None

    def list(self) -> list[StoredVoice]:
        if not self.root.is_dir():
            return []
        voices = []
        for path in sorted(self.root.glob("*.wav")):
            if is_valid_voice_id(path.stem):
                with contextlib.suppress(VoiceLibraryError):  # gone meanwhile, or a symlink out
                    voices.append(self.get(path.stem))
        return voices

    def add(
        self,
        name: str,
        samples: Samples,
        *,
        voice_id: str | None = None,
        language: str | None = None,
    ) -> StoredVoice:
        """Store mono float32 audio at STORE_RATE under a new id made from ``name``, or under
        ``voice_id`` when given (VoiceExistsError when taken)."""
        self.ensure()
        wav = encode_all(np.asarray(samples, dtype=np.float32), "wav", STORE_RATE)
        with self._lock:
            count = sum(1 for p in self.root.glob("*.wav") if is_valid_voice_id(p.stem))
            if count >= self.max_voices:
                raise VoiceLibraryFullError(
                    f"the voice library holds its maximum of {self.max_voices} voices"
                )
            if voice_id is None:
                voice_id = f"{_slug(name) or 'voice'}-{secrets.token_hex(4)}"
            wav_path = self._path(voice_id, ".wav")
            if wav_path.exists():
                raise VoiceExistsError(f"voice {voice_id!r} already exists")
            meta: dict[str, object] = {
                "name": name,
                "created_at": int(time.time()),
                "duration_s": samples.size / STORE_RATE,
            }
            if language is not None:
                meta["language"] = language
            # Metadata first, audio last: a voice is listed only once its audio is complete.
            _atomic_write(self._path(voice_id, ".json"), json.dumps(meta).encode())
            _atomic_write(wav_path, wav)
        return self.get(voice_id)

    def delete(self, voice_id: str) -> StoredVoice:
        voice = self.get(voice_id)
        with self._lock:
            voice.path.unlink(missing_ok=True)
            self._path(voice_id, ".json").unlink(missing_ok=True)
        return voice


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
