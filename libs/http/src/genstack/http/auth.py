"""API keys: ``Authorization: Bearer <key>``, held as sha256 digests, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac


class ApiKeys:
    """Holds only digests of the keys. ``identify`` compares the presented key's digest with
    every known one (no early exit), so timing tells nothing about which or how much matched."""

    def __init__(self, keys: list[str]) -> None:
        self._digests = [hashlib.sha256(key.encode()).digest() for key in keys]

    def __len__(self) -> int:
        return len(self._digests)

    def identify(self, presented: str) -> str | None:
        """A short stable id of the matching key (for scoping, never the key), or None."""
        digest = hashlib.sha256(presented.encode()).digest()
        found: bytes | None = None
        for known in self._digests:
            if hmac.compare_digest(digest, known):
                found = known
        return None if found is None else found[:8].hex()


def bearer_token(header: bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header; None when absent or empty."""
    if not header:
        return None
    scheme, _, token = header.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None
