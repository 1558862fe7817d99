"""``mlmodel monitor``'s comparison: captured requests against the training examples, with TFDV.

Both sides are described by the same cheap image features (``datasources/image_features.py``)
plus one categorical feature, ``predicted_class``: the class the served model answered for a
request, and the label for a training example. TFDV computes statistics of each side
(``generate_statistics_from_dataframe``) and compares them with its drift comparators, set in a
schema inferred from the training statistics: Jensen-Shannon divergence for the numeric features,
L-infinity distance for ``predicted_class`` (``validate_statistics(served, schema,
previous_statistics=training)``). The share of predictions whose top probability is below
``low_confidence`` is checked against its own threshold.

A feature drifts when its measure is above its threshold; the report names each one with the
measure and the threshold. TensorFlow and TFDV are imported only inside ``compare``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from datasources.image_features import FEATURE_NAMES, image_features
from metastore.errors import InputError

CLASS_FEATURE = "predicted_class"
LOW_CONFIDENCE_SHARE = "low_confidence_share"
JSD, LINF, SHARE = "jensen_shannon_divergence", "infinity_norm", "share_below_confidence"
DEFAULT_LOW_CONFIDENCE = 0.5  # a prediction whose top probability is below this is "low"
DEFAULT_THRESHOLDS: dict[str, float] = {
    # Jensen-Shannon divergence, 0..1. TFDV compares 10-bucket histograms: a few hundred requests
    # of unchanged images measure up to about 0.2 (more with a tiny training set); inverted,
    # shifted or rotated images measure 0.5 to 1. Lower it for big, smooth data.
    **{name: 0.3 for name in FEATURE_NAMES},
    CLASS_FEATURE: 0.15,  # L-infinity: the largest difference in one class's share
    LOW_CONFIDENCE_SHARE: 0.3,  # at most 30% low-confidence predictions
}
EXIT_DRIFT = 3  # `mlmodel monitor`'s exit code when something drifted (0: nothing did)
GALLERY_SIZE = 24  # the lowest-confidence requests the report lists
BUCKET_S = 3600  # the predicted-class mix over time: one row per hour


def parse_thresholds(pairs: Sequence[str]) -> dict[str, float]:
    """``feature=value`` settings over ``DEFAULT_THRESHOLDS``; InputError names a bad one."""
    thresholds = dict(DEFAULT_THRESHOLDS)
    for pair in pairs:
        name, _, text = pair.partition("=")
        if name not in thresholds:
            raise InputError(f"--threshold {pair!r}: unknown feature {name!r}; choose from "
                             f"{', '.join(thresholds)}")
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"--threshold {pair!r}: give feature=number, e.g. "
                             f"{name}={thresholds[name]}") from None
        if not 0 <= value <= 1:
            raise InputError(f"--threshold {pair!r}: the threshold must be between 0 and 1")
        thresholds[name] = value
    return thresholds


def _frame(pixels: np.ndarray, classes: Sequence[str]) -> Any:
    import pandas as pd

    columns: dict[str, Any] = dict(image_features(pixels))
    columns[CLASS_FEATURE] = list(classes)
    return pd.DataFrame(columns)


def _schema(train_stats: Any, thresholds: Mapping[str, float]) -> Any:
    import tensorflow_data_validation as tfdv

    schema = tfdv.infer_schema(train_stats)
    for name in FEATURE_NAMES:
        tfdv.get_feature(schema, name).drift_comparator.jensen_shannon_divergence.threshold = (
            thresholds[name])
    class_feature = tfdv.get_feature(schema, CLASS_FEATURE)
    class_feature.drift_comparator.infinity_norm.threshold = thresholds[CLASS_FEATURE]
    # The classes a model answers need not all be in the training labels' domain (and the
    # domain check is not drift): compare distributions only.
    class_feature.ClearField("domain")
    return schema


def _measures(anomalies: Any) -> dict[str, tuple[str, float, float]]:
    """feature -> (comparator, measured value, threshold) from TFDV's ``drift_skew_info``."""
    measured: dict[str, tuple[str, float, float]] = {}
    kinds = {"JENSEN_SHANNON_DIVERGENCE": JSD, "L_INFTY": LINF}
    for info in anomalies.drift_skew_info:
        name = ".".join(info.path.step)
        for measurement in info.drift_measurements:
            kind = type(measurement).Type.Name(measurement.type)
            measured[name] = (kinds.get(kind, kind.lower()), float(measurement.value),
                              float(measurement.threshold))
    return measured


def compare(train_pixels: np.ndarray, train_labels: np.ndarray, served_pixels: np.ndarray,
            probabilities: np.ndarray, class_names: Sequence[str],
            thresholds: Mapping[str, float] | None = None,
            low_confidence: float = DEFAULT_LOW_CONFIDENCE) -> dict[str, Any]:
    """The drift part of the report: one entry per feature, the class mix, low confidence."""
    import tensorflow_data_validation as tfdv

    limits = dict(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
    names = list(class_names)
    known = train_labels >= 0
    train_classes = [names[i] for i in train_labels[known]]
    predicted = np.argmax(probabilities, axis=1)
    train_stats = tfdv.generate_statistics_from_dataframe(
        _frame(train_pixels[known], train_classes))
    served_stats = tfdv.generate_statistics_from_dataframe(
        _frame(served_pixels, [names[i] for i in predicted]))
    anomalies = tfdv.validate_statistics(served_stats, _schema(train_stats, limits),
                                         previous_statistics=train_stats)
    measured = _measures(anomalies)
    train_features = image_features(train_pixels[known])
    served_features = image_features(served_pixels)
    features = []
    for name in (*FEATURE_NAMES, CLASS_FEATURE):
        comparator, value, threshold = measured.get(name, (
            LINF if name == CLASS_FEATURE else JSD, 0.0, limits[name]))
        row: dict[str, Any] = {"feature": name, "comparator": comparator, "divergence": value,
                               "threshold": threshold, "drifted": value > threshold}
        if name in train_features:
            row.update(training_mean=float(train_features[name].mean()),
                       served_mean=float(served_features[name].mean()))
        features.append(row)
    confidence = probabilities[np.arange(len(predicted)), predicted]
    low_share = float(np.mean(confidence < low_confidence)) if len(confidence) else 0.0
    features.append({"feature": LOW_CONFIDENCE_SHARE, "comparator": SHARE,
                     "divergence": low_share, "threshold": limits[LOW_CONFIDENCE_SHARE],
                     "drifted": low_share > limits[LOW_CONFIDENCE_SHARE],
                     "low_confidence": low_confidence})
    train_mix = np.bincount(train_labels[known], minlength=len(names)) / max(1, int(known.sum()))
    served_mix = np.bincount(predicted, minlength=len(names)) / max(1, len(predicted))
    return {
        "features": features,
        "drifted": [f["feature"] for f in features if f["drifted"]],
        "class_mix": [{"class": name, "index": i, "training": float(train_mix[i]),
                       "served": float(served_mix[i])} for i, name in enumerate(names)],
        "low_confidence": low_confidence, "low_confidence_share": low_share,
        "mean_confidence": float(confidence.mean()) if len(confidence) else None,
        "anomalies": {k: v.description for k, v in anomalies.anomaly_info.items()},
    }


def mix_over_time(at: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str],
                  bucket_s: int = BUCKET_S) -> list[dict[str, Any]]:
    """Per ``bucket_s`` window (UTC): requests and the share of each predicted class."""
    if not len(at):
        return []
    predicted = np.argmax(probabilities, axis=1)
    buckets = (at // bucket_s).astype(np.int64)
    rows = []
    for bucket in np.unique(buckets):
        mask = buckets == bucket
        counts = np.bincount(predicted[mask], minlength=len(class_names))
        rows.append({"start": float(bucket * bucket_s), "requests": int(mask.sum()),
                     "shares": {name: float(counts[i] / mask.sum())
                                for i, name in enumerate(class_names)}})
    return rows


def lowest_confidence(probabilities: np.ndarray, sources: Sequence[str],
                      class_names: Sequence[str], size: int = GALLERY_SIZE) -> list[dict[str, Any]]:
    """The ``size`` requests the model was least sure of (where each is in the capture files)."""
    if not len(probabilities):
        return []
    predicted = np.argmax(probabilities, axis=1)
    confidence = probabilities[np.arange(len(predicted)), predicted]
    order = np.argsort(confidence, kind="stable")[:size]
    return [{"source": sources[i], "predicted": class_names[predicted[i]],
             "confidence": float(confidence[i])} for i in order]


def verdict(report: Mapping[str, Any]) -> int:
    """The exit code of a report: ``EXIT_DRIFT`` when something drifted, else 0."""
    return EXIT_DRIFT if report.get("drifted") else 0


def stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
