"""Prometheus metrics of one gateway process (its own registry: no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "genstack_gateway_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "genstack_gateway_request_latency_seconds",
            "From the request to the first byte of the answer, by route template.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.jobs_submitted = Counter(
            "genstack_gateway_jobs_submitted",
            "Jobs accepted, by type, backend and queue.",
            ["type", "backend", "queue"],
            registry=self.registry,
        )
        self.jobs_rejected = Counter(
            "genstack_gateway_jobs_rejected",
            "Job submissions refused, by queue and reason (queue_full, dispatch_failed).",
            ["queue", "reason"],
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "genstack_gateway_jobs_finished",
            "Jobs that reached a terminal state (seen by this replica's notifier), by queue "
            "and state.",
            ["queue", "status"],
            registry=self.registry,
        )
        self.jobs_by_state = Gauge(
            "genstack_gateway_jobs",
            "Jobs known to Redis by state and queue (among the newest, refreshed on scrape).",
            ["queue", "status"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "genstack_gateway_queue_depth",
            "Messages waiting in each backend queue (refreshed on scrape).",
            ["queue"],
            registry=self.registry,
        )
        self.webhooks = Counter(
            "genstack_gateway_webhooks",
            "Webhook deliveries finished, by result (delivered, gave_up, refused).",
            ["result"],
            registry=self.registry,
        )
        self.webhook_attempts = Counter(
            "genstack_gateway_webhook_attempts",
            "Webhook HTTP attempts, by outcome (2xx, 4xx, 5xx, error).",
            ["outcome"],
            registry=self.registry,
        )
        self.speech_ttfb = Histogram(
            "genstack_gateway_speech_first_byte_seconds",
            "From a /v1/audio/speech request to the backend's first body byte, by backend.",
            ["backend"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_request(
        self, method: str, route: str, status: int, first_byte_s: float | None
    ) -> None:
        """genstack.http's RequestMetrics: one answered request."""
        self.requests.labels(method, route, str(status)).inc()
        if first_byte_s is not None:
            self.latency.labels(route).observe(first_byte_s)
