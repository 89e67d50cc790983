"""Standard Webhooks signatures (https://www.standardwebhooks.com/):
``webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret


class WebhookSecretError(ValueError):
    pass


def decode_secret(secret: str) -> bytes:
    """``whsec_<base64>`` (or bare base64) -> the HMAC key, as the reference libraries do."""
    body = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(body + "==", validate=False)
    except (binascii.Error, ValueError) as exc:
        raise WebhookSecretError("GATEWAY_WEBHOOK_SECRET is not whsec_<base64>") from exc
    if len(key) < 16:
        raise WebhookSecretError("GATEWAY_WEBHOOK_SECRET must hold at least 16 bytes")
    return key


class WebhookSigner:
    def __init__(self, secret: str) -> None:
        self._key = decode_secret(secret)

    def sign(self, msg_id: str, timestamp: int, body: bytes) -> str:
        payload = f"{msg_id}.{timestamp}.".encode() + body
        digest = hmac.new(self._key, payload, hashlib.sha256).digest()
        return "v1," + base64.b64encode(digest).decode()

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": self.sign(msg_id, timestamp, body),
        }
