"""``mlmodel eval``'s numbers: the IRIS repetitions (no, losses, metrics) and per-class accuracy.

The model runs once over every example (``offline_inference``); each repetition then scores a
random ``rate`` share of them, drawn without replacement from ``numpy.random.default_rng(seed)``,
so a repetition is a different sample and the same seed gives the same samples again. Loss is
the mean sparse categorical cross-entropy (what the Trainer minimises), metrics the accuracy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

EPSILON = 1e-7  # probabilities are clipped before the log, as Keras does


def _loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, EPSILON, 1.0))))


def _accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


def sample_size(count: int, rate: float) -> int:
    return max(1, min(count, int(round(rate * count))))


def evaluate(probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
             rate: float = 0.8, repeat: int = 3, seed: int = 0) -> dict[str, Any]:
    """The result ``mlmodel eval`` prints and records."""
    count = len(labels)
    if probabilities.shape != (count, len(class_names)):
        raise ValueError(f"probabilities {probabilities.shape} do not match {count} examples "
                         f"of {len(class_names)} classes")
    rng = np.random.default_rng(seed)
    size = sample_size(count, rate)
    repetitions = []
    for no in range(1, repeat + 1):
        chosen = np.sort(rng.choice(count, size=size, replace=False))
        repetitions.append({
            "no": no, "examples": size,
            "losses": _loss(probabilities[chosen], labels[chosen]),
            "metrics": {"accuracy": _accuracy(probabilities[chosen], labels[chosen])},
            "sample": hashlib.sha256(chosen.tobytes()).hexdigest()[:12],
        })
    per_class = {}
    predicted = np.argmax(probabilities, axis=1)
    for index, name in enumerate(class_names):
        mask = labels == index
        if mask.any():
            per_class[str(name)] = {"index": index, "examples": int(mask.sum()),
                                    "accuracy": float(np.mean(predicted[mask] == index))}
    return {
        "examples": count, "rate": rate, "repeat": repeat, "seed": seed,
        "accuracy": _accuracy(probabilities, labels), "loss": _loss(probabilities, labels),
        "repetitions": repetitions, "per_class": per_class,
    }
