"""Prometheus metrics of one TTS server (its own registry: no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60)
_RTF = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 4, 8)


class TTSMetrics:
    def __init__(self, engine: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"engine": engine}
        self.requests = Counter(
            "genstack_tts_requests",
            "HTTP requests answered, by route and status code.",
            ["route", "status"],
            registry=self.registry,
        )
        self.time_to_first_audio = Histogram(
            "genstack_tts_time_to_first_audio_seconds",
            "From the request's arrival to its first audio bytes leaving the server.",
            ["stream"],
            buckets=_LATENCY,
            registry=self.registry,
        )
        self.realtime_factor = Histogram(
            "genstack_tts_realtime_factor",
            "Synthesis time divided by the duration of the audio made (below 1: faster than "
            "real time).",
            buckets=_RTF,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "genstack_tts_queue_wait_seconds",
            "Time a request waited for the model.",
            buckets=_LATENCY,
            registry=self.registry,
        )
        self.audio_seconds = Counter(
            "genstack_tts_audio_seconds",
            "Seconds of audio synthesized.",
            registry=self.registry,
        )
        self.rejected = Counter(
            "genstack_tts_busy_rejections",
            "Requests refused with 503 because the model was busy.",
            registry=self.registry,
        )
        self.cancelled = Counter(
            "genstack_tts_cancelled",
            "Syntheses stopped early because the client went away.",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "genstack_tts_queue_depth", "Requests waiting for the model.", registry=self.registry
        )
        self.model_ready = Gauge(
            "genstack_tts_model_ready",
            "1 once the model is loaded.",
            list(labels),
            registry=self.registry,
        ).labels(**labels)
        self.voice_cache = Counter(
            "genstack_tts_voice_cache",
            "Voice conditioning lookups, by result (hit, miss).",
            ["result"],
            registry=self.registry,
        )

    def observe_request(
        self, method: str, route: str, status: int, first_byte_s: float | None
    ) -> None:
        """genstack.http's RequestMetrics: one answered request."""
        self.requests.labels(route, str(status)).inc()
