"""One ``mlmodel monitor`` run: pick the version, read its captures and its training examples,
compare them (``registry.monitor``), and build the report that is printed and stored.

The baseline is the training examples of the version's pipeline run, found through ML Metadata
(``registry.monitor_lineage``); ``baseline`` (anything ``--data`` reads) replaces it, for an
imported model or a cleaned pipeline root.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from contracts import capture as layout
from contracts import settings
from metastore.errors import InputError
from registry import monitor, monitor_lineage
from registry.monitor_lineage import MonitoredVersion

DEFAULT_SINCE = "24h"
DEFAULT_MAX_TRAINING = 20_000  # training examples read for the baseline (the first ones)


@dataclass(frozen=True)
class MonitorRequest:
    name: str
    version: int | None = None
    label: str | None = None
    since: str | None = DEFAULT_SINCE
    capture_dir: str | None = None
    thresholds: tuple[str, ...] = ()
    low_confidence: float = monitor.DEFAULT_LOW_CONFIDENCE
    baseline: str | None = None
    max_training: int = DEFAULT_MAX_TRAINING


@dataclass
class MonitorResult:
    report: dict[str, Any]
    target: MonitoredVersion
    training_artifact: Any  # the Examples artifact compared with (None for --baseline)


def _training(reg: Any, target: MonitoredVersion, request: MonitorRequest,
              class_names: list[str]) -> tuple[np.ndarray, np.ndarray, dict[str, Any], Any]:
    if request.baseline:
        from datasources.offline import read_offline

        try:
            data = read_offline(request.baseline, class_names, "train")
        except ValueError as exc:  # DataError is a ValueError
            raise InputError(f"--baseline: {exc}") from None
        return data.pixels, data.labels, {"source": "baseline", "data": request.baseline,
                                           "layout": data.description}, None
    found = monitor_lineage.training_data(reg.store, target)
    pixels, labels = monitor_lineage.read_training(found.files, len(class_names),
                                                   request.max_training)
    artifact = monitor_lineage._artifact(reg.store, found.examples_artifact_id)
    return pixels, labels, {"source": "mlmd", "examples_uri": found.examples_uri,
                            "examples_artifact_id": found.examples_artifact_id,
                            "model_artifact_id": found.model_artifact_id,
                            "pipeline_run": found.pipeline_run}, artifact


def run_monitor(reg: Any, request: MonitorRequest) -> MonitorResult:
    """The report of one version (see ``registry.monitor`` for what it compares)."""
    from contracts.dictionary import read_model_dictionary
    from registry import monitor_capture

    started = time.perf_counter()
    thresholds = monitor.parse_thresholds(request.thresholds)
    since_s = monitor_capture.parse_since(request.since)
    capture_dir = os.path.abspath(request.capture_dir or settings.default_capture_dir())
    target = monitor_lineage.pick_version(reg, request.name, request.version, request.label)
    class_names = read_model_dictionary(target.path)
    folder = layout.version_dir(capture_dir, target.serving_name, target.version)
    files = monitor_capture.capture_files(capture_dir, target.serving_name, [target.version],
                                          since_s)
    captured = monitor_capture.read_captured(files, class_names, since_s)
    if not len(captured):
        window = f" in the last {request.since}" if request.since else ""
        raise InputError(
            f"no captured requests for version {target.version} of {request.name!r} in "
            f"{folder}{window} ({len(files)} file(s)); start the server with --capture-rate "
            f"and --capture-dir {capture_dir}, or widen --since")
    read_s = time.perf_counter() - started
    train_pixels, train_labels, baseline, artifact = _training(reg, target, request, class_names)
    compared = monitor.compare(train_pixels, train_labels, captured.pixels,
                               captured.probabilities, class_names, thresholds,
                               request.low_confidence)
    report: dict[str, Any] = {
        "model": request.name, "version": target.version, "serving_name": target.serving_name,
        "capture_folder": folder, "since": request.since or "", "at": monitor.stamp(),
        "requests": len(captured), "files": captured.files, "skipped_records": captured.skipped,
        "first_request": float(captured.at.min()), "last_request": float(captured.at.max()),
        "training": {**baseline, "examples": int((train_labels >= 0).sum())},
        "class_names": list(class_names), "thresholds": thresholds,
        **compared,
        "mix_over_time": monitor.mix_over_time(captured.at, captured.probabilities, class_names),
        "lowest_confidence": monitor.lowest_confidence(captured.probabilities, captured.sources,
                                                       class_names),
        "exit_code": 0,
    }
    report["exit_code"] = monitor.verdict(report)
    report["seconds"] = {"read_captures": round(read_s, 2),
                         "total": round(time.perf_counter() - started, 2)}
    return MonitorResult(report, target, artifact)
