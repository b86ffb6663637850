"""Prometheus metrics of one app (its own registry: two apps in one process never share counters)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Upload latencies range from a fraction of a second (short clips) to minutes (long files through VAD).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class ServeMetrics:
    """Requests, errors, refusals, audio seconds and latency per endpoint, plus the pool and stream gauges."""

    def __init__(self, pending_jobs: Callable[[], int]):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("lit_asr_requests", "Requests received", ["endpoint"], registry=self.registry)
        self.errors = Counter("lit_asr_errors", "Requests answered with an error (bad input, limits, faults)",
                              ["endpoint", "code"], registry=self.registry)
        self.rejected = Counter("lit_asr_rejected", "Requests refused because the server was busy (503 / 1013)",
                                ["endpoint"], registry=self.registry)
        self.audio_seconds = Counter("lit_asr_audio_seconds", "Seconds of audio transcribed", ["endpoint"],
                                     registry=self.registry)
        self.latency = Histogram("lit_asr_request_seconds", "Time from a complete request (or end of stream) to "
                                 "its transcript", ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.streams = Gauge("lit_asr_active_streams", "WebSocket streams open now", registry=self.registry)
        pending = Gauge("lit_asr_pending_jobs", "Model jobs running or waiting in the worker pool",
                        registry=self.registry)
        pending.set_function(pending_jobs)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
