"""The Trainer's progress side channel: one JSON line per epoch to a file the runner watches.

Pure Python (no TensorFlow): the runner (pipeline/progress.py) imports the names and the line
format from here, the Trainer's Keras callback (modules/model.py ``ProgressFile``) writes them.
The runner names the file in the environment variable ``PROGRESS_ENV`` before the pipeline
runs; without it (a Kubeflow container, a test calling ``run_fn`` directly) nothing is written.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

PROGRESS_ENV = "MNIST_TFX_TRAINING_PROGRESS"


@dataclasses.dataclass(frozen=True)
class EpochProgress:
    """Where training stands at the end of one epoch."""

    epoch: int  # 1-based
    epochs: int  # planned
    eval_accuracy: float | None
    best_accuracy: float | None
    best_epoch: int | None  # 1-based
    seconds: float  # since training started
    seconds_left: float | None  # the planned epochs at the pace so far, within the time limit

    def to_line(self) -> str:
        return json.dumps(dataclasses.asdict(self)) + "\n"

    @classmethod
    def from_line(cls, line: str) -> EpochProgress | None:
        """The record of one line, or None for a torn or foreign line."""
        try:
            values: dict[str, Any] = json.loads(line)
            return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})
        except (ValueError, TypeError, KeyError):
            return None

    def describe(self) -> str:
        """``epoch 12/45, eval accuracy 0.9806 (best 0.9861, epoch 10), about 25 s left``."""
        parts = [f"epoch {self.epoch}/{self.epochs}"]
        if self.eval_accuracy is not None:
            parts.append(f"eval accuracy {self.eval_accuracy:.4f}")
            if self.best_accuracy is not None and self.best_epoch is not None:
                parts[-1] += f" (best {self.best_accuracy:.4f}, epoch {self.best_epoch})"
        if self.seconds_left is not None:
            parts.append(f"about {_duration(self.seconds_left)} left")
        return ", ".join(parts)


def estimate_left(epoch: int, epochs: int, seconds: float, limit_seconds: float | None) -> float:
    """Seconds left for the planned epochs at the pace of the first ``epoch``, within the limit."""
    left = seconds / max(1, epoch) * max(0, epochs - epoch)
    if limit_seconds is not None:
        left = min(left, max(0.0, limit_seconds - seconds))
    return left


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"
