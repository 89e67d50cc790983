"""Standard Webhooks signatures, checked with the reference implementation."""

from __future__ import annotations

import base64
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from genstack.gateway.webhooks.signing import WebhookSecretError, WebhookSigner

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_reference_library_verifies_our_signature() -> None:
    body = json.dumps({"type": "job.succeeded", "data": {"id": "x"}}).encode()
    headers = WebhookSigner(SECRET).headers("job_x_succeeded", int(time.time()), body)
    assert Webhook(SECRET).verify(body, headers) == {"type": "job.succeeded", "data": {"id": "x"}}


def test_tampered_body_or_other_secret_fails() -> None:
    body = b'{"a":1}'
    headers = WebhookSigner(SECRET).headers("m1", int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(b'{"a":2}', headers)
    other = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)


def test_bare_base64_secret_is_accepted() -> None:
    bare = SECRET.removeprefix("whsec_")
    body = b"{}"
    headers = WebhookSigner(bare).headers("m", int(time.time()), body)
    Webhook(SECRET).verify(body, headers)


@pytest.mark.parametrize("secret", ["whsec_", "whsec_c2hvcnQ=", "!!!"])
def test_weak_or_malformed_secrets_are_refused(secret: str) -> None:
    with pytest.raises(WebhookSecretError):
        WebhookSigner(secret)
