"""Webhooks: Standard Webhooks signatures, SSRF-safe targets, exactly-once notification."""
