"""Signed /v1/files links."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

from genstack.gateway.links import FileSigner


def test_signed_path_verifies_until_it_expires() -> None:
    signer = FileSigner(b"k" * 32)
    expires = int(time.time()) + 60
    path = signer.path("outputs/2026-01-01/job/a b.wav", expires)
    parts = urlsplit(path)
    assert parts.path == "/v1/files/outputs/2026-01-01/job/a%20b.wav"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    key = "outputs/2026-01-01/job/a b.wav"
    assert signer.verify(key, query["expires"], query["signature"], time.time())
    assert not signer.verify(key, query["expires"], query["signature"], expires + 1)


def test_tampering_is_detected() -> None:
    signer = FileSigner(b"k" * 32)
    expires = int(time.time()) + 60
    signature = signer.signature("a/b.wav", expires)
    assert not signer.verify("a/c.wav", str(expires), signature, time.time())
    assert not signer.verify("a/b.wav", str(expires + 1), signature, time.time())
    assert not signer.verify("a/b.wav", "soon", signature, time.time())
    assert not FileSigner(b"x" * 32).verify("a/b.wav", str(expires), signature, time.time())
