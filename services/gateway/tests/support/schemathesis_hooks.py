"""schemathesis hooks for the gateway's property-based test (SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

from typing import Any

import schemathesis

# Deliberate answers with OpenAI's error body: backend failed / unreachable / timed out.
DOCUMENTED_5XX = {502, 503, 504}


@schemathesis.check
def no_unhandled_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 500 ever, and a 5xx only when it is one the gateway means (and documents)."""
    status = response.status_code
    if status == 500 or (status >= 500 and status not in DOCUMENTED_5XX):
        raise AssertionError(f"HTTP {status}: {response.text[:1000]}")
    if status in DOCUMENTED_5XX and '"error"' not in response.text:
        raise AssertionError(f"HTTP {status} without an error body: {response.text[:1000]}")
    return None
