"""Inputs by URL: fetched by the worker behind the SSRF guard (no private, loopback or
link-local address unless COMFYUI_INPUT_ALLOW_NETWORKS lets it through), with a size limit,
a time limit and a content check, before they are uploaded to ComfyUI's input folder."""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx

from genstack.core.ssrf import UnsafeUrlError, UrlPolicy
from genstack.core.storage import Storage, StorageError

__all__ = [
    "FetchedInput",
    "InputError",
    "InputFetcher",
    "StoredInputs",
    "UnsafeUrlError",
    "VoiceFiles",
]

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class InputError(Exception):
    """The URL answered, but not with a usable file; the message says why."""


@dataclass(frozen=True)
class FetchedInput:
    name: str
    data: bytes
    content_type: str


def file_name(url: str, index: int) -> str:
    """A safe file name from the URL's last path segment (``input-<n>`` when it has none)."""
    last = PurePosixPath(httpx.URL(url).path).name
    name = _UNSAFE_NAME.sub("_", last).strip("._")[:100]
    return f"{index}-{name}" if name else f"input-{index}"


class InputFetcher:
    def __init__(self, policy: UrlPolicy, *, max_bytes: int, timeout_s: float) -> None:
        self.policy = policy
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    def fetch(self, url: str, kind: str, index: int = 0) -> FetchedInput:
        """GET ``url``; its Content-Type must be ``kind/*`` (or application/octet-stream).
        Raises UnsafeUrlError (refused address) or InputError."""
        target = self.policy.check_sync(url)
        headers = {"host": target.host_header, "user-agent": "genstack-comfyui"}
        extensions = {"sni_hostname": target.host} if target.parts.scheme == "https" else {}
        deadline = time.monotonic() + self.timeout_s
        try:
            with (
                httpx.Client(timeout=self.timeout_s, trust_env=False) as http,
                http.stream(
                    "GET",
                    target.pinned_url(),
                    headers=headers,
                    extensions=extensions,
                    follow_redirects=False,  # a redirect would leave the checked address
                ) as response,
            ):
                if response.is_redirect:
                    raise InputError(
                        f"{url} redirects ({response.status_code}): give the final URL"
                    )
                if response.status_code != 200:
                    raise InputError(f"{url} answered {response.status_code}")
                content_type = response.headers.get("content-type", "").split(";")[0].strip()
                if not (
                    content_type.startswith(f"{kind}/")
                    or content_type == "application/octet-stream"
                ):
                    raise InputError(
                        f"{url} is {content_type or 'of no content type'}, not {kind}/*"
                    )
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > self.max_bytes:
                    raise InputError(f"{url} is larger than {self.max_bytes} bytes")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise InputError(f"{url} is larger than {self.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise InputError(f"{url} took longer than {self.timeout_s:g}s")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise InputError(f"{url} could not be fetched: {exc!r}") from exc
        if size == 0:
            raise InputError(f"{url} is empty")
        return FetchedInput(file_name(url, index), b"".join(chunks), content_type)


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
        name = _UNSAFE_NAME.sub("_", PurePosixPath(key).name).strip("._")[:100] or "input"
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
