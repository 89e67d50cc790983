"""Files by URL, fetched on a client's behalf behind the SSRF guard (:mod:`genstack.core.ssrf`):
no private, loopback or link-local address unless the policy's allow list lets it through,
a connection to the address that was checked (no second DNS lookup), no redirects, a size
limit, a time limit and a Content-Type check. The gateway fetches a job's input files with it
at submission; the ComfyUI worker fetches the URLs of raw workflows with it.

Synchronous on purpose: callers run it in a thread (the gateway's pool, a job handler)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import PurePosixPath

import httpx

from genstack.core.ssrf import UnsafeUrlError, UrlPolicy

__all__ = [
    "FetchedInput",
    "InputError",
    "InputFetcher",
    "InputTooLargeError",
    "UnsafeUrlError",
    "file_name",
]

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class InputError(Exception):
    """The URL answered, but not with a usable file; the message says why."""


class InputTooLargeError(InputError):
    """The file is over the fetcher's size limit."""


@dataclass(frozen=True)
class FetchedInput:
    name: str
    data: bytes
    content_type: str


def safe_name(name: str) -> str:
    """``name`` with anything but letters, digits, ``._-`` replaced; at most 100 characters."""
    return _UNSAFE_NAME.sub("_", name).strip("._")[:100]


def file_name(url: str, index: int) -> str:
    """A safe file name from the URL's last path segment (``input-<n>`` when it has none)."""
    name = safe_name(PurePosixPath(httpx.URL(url).path).name)
    return f"{index}-{name}" if name else f"input-{index}"


class InputFetcher:
    def __init__(
        self,
        policy: UrlPolicy,
        *,
        max_bytes: int,
        timeout_s: float,
        user_agent: str = "genstack",
    ) -> None:
        self.policy = policy
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.user_agent = user_agent

    def fetch(
        self, url: str, kind: str, index: int = 0, *, check_type: bool = True
    ) -> FetchedInput:
        """GET ``url``; its Content-Type must be ``kind/*`` (or application/octet-stream)
        unless ``check_type`` is off (a caller that checks the bytes themselves: servers
        label files loosely, S3 with binary/octet-stream). Raises UnsafeUrlError (refused
        address) or InputError."""
        target = self.policy.check_sync(url)
        headers = {"host": target.host_header, "user-agent": self.user_agent}
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
                if check_type and not (
                    content_type.startswith(f"{kind}/")
                    or content_type == "application/octet-stream"
                ):
                    raise InputError(
                        f"{url} is {content_type or 'of no content type'}, not {kind}/*"
                    )
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > self.max_bytes:
                    raise InputTooLargeError(f"{url} is larger than {self.max_bytes} bytes")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise InputTooLargeError(f"{url} is larger than {self.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise InputError(f"{url} took longer than {self.timeout_s:g}s")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise InputError(f"{url} could not be fetched: {exc!r}") from exc
        if size == 0:
            raise InputError(f"{url} is empty")
        return FetchedInput(file_name(url, index), b"".join(chunks), content_type)
