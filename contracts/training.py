"""What the Trainer records about a training run, and how people read it.

The Trainer writes ``training_summary.json`` beside the SavedModel; its ``budget`` object (see
``modules/budget.py``) says how long the run was planned to train and why, and what stopped it.
The same object is a JSON custom property (``budget``) of the ``Model`` artifact in MLMD.
"""

from __future__ import annotations

from typing import Any

TRAINING_SUMMARY_FILE = "training_summary.json"


def describe_training(budget: dict[str, Any]) -> str:
    """One line for people: the plan, what stopped it, the epoch whose weights were kept."""
    if not budget:
        return "-"
    parts = [f"batch {budget.get('batch_size', '?')}, "
             f"{budget.get('epochs', '?')} epochs x {budget.get('steps_per_epoch', '?')} steps planned"]
    if "epochs_run" in budget:
        parts.append(f"ran {budget['epochs_run']}, stopped by {budget.get('stopped_by', '?')}; "
                     f"kept epoch {budget.get('best_epoch', '?')}'s weights")
    if budget.get("augment") is not None:
        policy = budget.get("augmentation")
        augmented = f"augmented ({policy})" if policy and policy != "none" else "augmented"
        parts.append(augmented if budget["augment"] else "not augmented")
    return "; ".join(parts)
