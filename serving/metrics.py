"""Prometheus metrics of one server: requests, latency and errors per model and version."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["model", "version", "api"]
        self.requests = Counter(
            "serving_requests", "Requests answered, by model, version, API and HTTP status",
            [*labels, "code"], registry=self.registry)
        self.errors = Counter(
            "serving_request_errors", "Requests answered with an error status (4xx/5xx)",
            [*labels, "code"], registry=self.registry)
        self.latency = Histogram(
            "serving_request_latency_seconds", "Time from request to response",
            labels, buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch_rows = Histogram(
            "serving_batch_rows", "Examples per model call (dynamic batching)",
            ["model", "version", "signature"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry)
        self.in_flight = Gauge(
            "serving_requests_in_flight", "Requests being handled now (the app sets it to its "
            "drain counter)", registry=self.registry)
        self.version_state = Gauge(
            "serving_model_version_available", "1 while a version is loaded and serving",
            ["model", "version"], registry=self.registry)

    def observe(self, model: str, version: str, api: str, status: int, seconds: float) -> None:
        self.requests.labels(model, version, api, str(status)).inc()
        self.latency.labels(model, version, api).observe(seconds)
        if status >= 400:
            self.errors.labels(model, version, api, str(status)).inc()

    def on_batch(self, model: str, version: int, signature: str, rows: int) -> None:
        self.batch_rows.labels(model, str(version), signature).observe(rows)

    def on_state(self, model: str, version: int, state: str) -> None:
        self.version_state.labels(model, str(version)).set(1 if state == "AVAILABLE" else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
