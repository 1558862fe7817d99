"""Prometheus metrics of one server: requests, latency and errors per model and version.

Label values are bounded: the app passes a model/version only when the server has that model
(``app._metric_labels``); anything else (an unknown name in a URL, a version that never existed)
is counted under ``model="unknown"``. As a backstop, at most ``max_label_sets`` distinct
(model, version) pairs get their own series; later ones also fold into ``unknown``. Without this,
20,000 GETs to random names made ``/metrics`` 54 MB and rendering it took seconds (issue 10).

What the model answered (``PredictionStats``, every predict/classify request of every protocol):
``serving_prediction_confidence`` (a histogram of each example's highest probability) and
``serving_predicted_class_total`` (examples per predicted class), per model and version. The class
label is the model's own class name, or its index when the model has no dictionary: bounded by
the width of the model's output (at most ``MAX_CLASS_LABELS``). Request capture
(``serving.capture``) counts ``serving_capture_records_total`` (written),
``serving_capture_dropped_total`` (queue full), ``serving_capture_write_errors_total`` and
``serving_capture_deleted_files_total`` (the disk budget).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNKNOWN = "unknown"
DEFAULT_MAX_LABEL_SETS = 1000
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
SMALL_BATCH = 4  # up to this many examples a request is counted without numpy
MAX_CLASS_LABELS = 1000  # contracts.examples.MAX_CLASSES: wider outputs are not counted per class
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
        self.predictions = PredictionStats()
        self.registry.register(self.predictions)
        self.capture = {
            "captured": Counter("serving_capture_records", "Requests written to the capture "
                                "directory (PredictionLog records)", ["model", "version"],
                                registry=self.registry),
            "dropped": Counter("serving_capture_dropped", "Sampled requests not captured because "
                               "the writer's queue was full", ["model", "version"],
                               registry=self.registry),
            "write_errors": Counter("serving_capture_write_errors", "Sampled requests lost to "
                                    "an unwritable directory or a full disk",
                                    registry=self.registry),
            "deleted": Counter("serving_capture_deleted_files", "Finished capture files deleted "
                               "to keep --capture-max-mb", registry=self.registry),
        }

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

    def on_predictions(self, model: str, version: int, probabilities: np.ndarray,
                       class_names: list[str]) -> None:
        """One answered request's probabilities [examples, classes] (``serving.capture``)."""
        model, v = self._bounded(model, str(version))
        self.predictions.observe(model, v, probabilities, class_names)

    def on_capture(self, what: str, model: str, version: int, count: int = 1) -> None:
        counter = self.capture.get(what)
        if counter is None:
            return
        if what in ("write_errors", "deleted"):
            counter.inc(count)
        else:
            counter.labels(*self._bounded(model, str(version))).inc(count)

    def render(self) -> bytes:
        """The exposition text; call it in a thread (``app.metrics_handler`` does), it walks
        every series."""
        return generate_latest(self.registry)


class _Series:
    def __init__(self, classes: int, class_names: list[str]) -> None:
        self.buckets = np.zeros(len(CONFIDENCE_BUCKETS) + 1, dtype=np.int64)  # last: > 1.0
        self.total = 0.0
        self.classes = np.zeros(min(classes, MAX_CLASS_LABELS), dtype=np.int64)
        self.names = class_names if len(class_names) == classes else [
            str(i) for i in range(classes)]


class PredictionStats(Collector):
    """Confidence histogram and predicted-class counts, kept as numpy counts: a request adds
    its whole batch with a few array operations (prometheus_client's ``observe`` is one Python
    call per value), and ``collect`` renders them as a histogram and a counter family."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Series] = {}
        self._bounds = np.asarray(CONFIDENCE_BUCKETS)

    def observe(self, model: str, version: str, probabilities: np.ndarray,
                class_names: list[str]) -> None:
        if probabilities.ndim != 2 or not probabilities.size:
            return
        width = probabilities.shape[1]
        if probabilities.shape[0] <= SMALL_BATCH:  # plain Python: numpy's per-call cost
            rows = probabilities.tolist()          # dominates a one-image request
            tops = [max(row) for row in rows]
            predicted = [row.index(top) for row, top in zip(rows, tops, strict=True)]
            slots = [bisect.bisect_left(CONFIDENCE_BUCKETS, top) for top in tops]
            total = float(sum(tops))
        else:
            confidence = probabilities.max(axis=1)
            predicted = probabilities.argmax(axis=1).tolist()
            slots = np.searchsorted(self._bounds, confidence, side="left").tolist()
            total = float(confidence.sum())
        with self._lock:
            series = self._series.get((model, version))
            if series is None or len(series.names) != width:
                series = self._series[(model, version)] = _Series(width, class_names)
            if len(slots) <= SMALL_BATCH:
                for slot, index in zip(slots, predicted, strict=True):
                    series.buckets[slot] += 1
                    if index < MAX_CLASS_LABELS:
                        series.classes[index] += 1
            else:
                series.buckets += np.bincount(slots, minlength=len(series.buckets))
                kept = [i for i in predicted if i < MAX_CLASS_LABELS]
                series.classes += np.bincount(kept, minlength=len(series.classes)).astype(
                    np.int64)[:len(series.classes)]
            series.total += total

    def collect(self) -> Iterator[HistogramMetricFamily | CounterMetricFamily]:
        confidence = HistogramMetricFamily(
            "serving_prediction_confidence", "Highest class probability of each example "
            "answered (predict and classify, every protocol)", labels=["model", "version"])
        predicted = CounterMetricFamily(
            "serving_predicted_class", "Examples answered, by predicted class (the model's class "
            "name, or its index)", labels=["model", "version", "class"])
        with self._lock:
            series = {key: (s.buckets.copy(), s.total, s.classes.copy(), s.names)
                      for key, s in self._series.items()}
        for (model, version), (buckets, total, classes, names) in sorted(series.items()):
            cumulative = np.cumsum(buckets).tolist()
            confidence.add_metric(
                [model, version],
                [(f"{b:g}", c) for b, c in zip(CONFIDENCE_BUCKETS, cumulative, strict=False)]
                + [("+Inf", cumulative[-1])], total)
            for index, count in enumerate(classes.tolist()):
                if count:
                    predicted.add_metric([model, version, names[index]], count)
        yield confidence
        yield predicted
