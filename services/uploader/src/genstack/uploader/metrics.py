"""Prometheus metrics of one uploader process (its own registry: no global state)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class UploaderMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.uploads = Counter(
            "genstack_uploads",
            "Upload tasks finished, by result (uploaded, skipped = already verified, failed).",
            ["result"],
            registry=self.registry,
        )
        self.bytes = Counter(
            "genstack_upload_bytes", "Bytes uploaded and verified.", registry=self.registry
        )
        self.failures = Counter(
            "genstack_upload_failures",
            "Failed upload attempts, by kind (retry = will be retried, final, refused).",
            ["kind"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "genstack_upload_duration_seconds",
            "Time to hash, upload and verify one file.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.latency = Histogram(
            "genstack_upload_latency_seconds",
            "From the file's last write (mtime) to its object verified in the bucket.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.pending = Gauge(
            "genstack_upload_pending",
            "Files queued or waiting to settle, not yet verified.",
            registry=self.registry,
        )
        self.failed_files = Gauge(
            "genstack_upload_failed_files",
            "Files that exhausted their retries and wait for the next rescan.",
            registry=self.registry,
        )

    def track_pending(self, read: Callable[[], float]) -> None:
        self.pending.set_function(read)

    def track_failed(self, read: Callable[[], float]) -> None:
        self.failed_files.set_function(read)
