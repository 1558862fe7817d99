"""Prometheus metrics of one server: requests, latency and errors per model and version.

Label values are bounded: the app passes a model/version only when the server has that model
(``app._metric_labels``); anything else (an unknown name in a URL, a version that never existed)
is counted under ``model="unknown"``. As a backstop, at most ``max_label_sets`` distinct
(model, version) pairs get their own series; later ones also fold into ``unknown``. Without this,
20,000 GETs to random names made ``/metrics`` 54 MB and rendering it took seconds (issue 10).
"""

from __future__ import annotations

import threading

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNKNOWN = "unknown"
DEFAULT_MAX_LABEL_SETS = 1000
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, max_label_sets: int = DEFAULT_MAX_LABEL_SETS) -> None:
        self.registry = CollectorRegistry()
        # process_* (resident memory, CPU, open fds, start time): what an operator watches for
        # memory per request, and what tells one `--workers` process from another
        ProcessCollector(registry=self.registry)
        self.max_label_sets = max_label_sets
        self._label_sets: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
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

    def _bounded(self, model: str, version: str) -> tuple[str, str]:
        """(model, version), or ("unknown", "") once ``max_label_sets`` pairs are in use."""
        key = (model, version)
        if key in self._label_sets or model == UNKNOWN:
            return key
        with self._lock:
            if len(self._label_sets) >= self.max_label_sets:
                return UNKNOWN, ""
            self._label_sets.add(key)
        return key

    def observe(self, model: str, version: str, api: str, status: int, seconds: float) -> None:
        model, version = self._bounded(model, version)
        self.requests.labels(model, version, api, str(status)).inc()
        self.latency.labels(model, version, api).observe(seconds)
        if status >= 400:
            self.errors.labels(model, version, api, str(status)).inc()

    def on_batch(self, model: str, version: int, signature: str, rows: int) -> None:
        model, v = self._bounded(model, str(version))
        self.batch_rows.labels(model, v, signature).observe(rows)

    def on_state(self, model: str, version: int, state: str) -> None:
        # from the model manager: only versions the registry deployed (bounded by deploys)
        self.version_state.labels(model, str(version)).set(1 if state == "AVAILABLE" else 0)

    def render(self) -> bytes:
        """The exposition text; call it in a thread (``app.metrics_handler`` does), it walks
        every series."""
        return generate_latest(self.registry)
