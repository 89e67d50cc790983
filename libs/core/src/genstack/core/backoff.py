"""Retry delays shared by every task that retries."""

from __future__ import annotations

import random


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(max, base * 2**attempt)], so
    many clients failing together do not retry together."""
    return random.uniform(0, min(max_s, base_s * 2**attempt))  # noqa: S311 - not crypto
