"""The CNN's hyperparameters: one explicit, serialisable record."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from modules.precision import PRECISIONS

LR_SCHEDULES = ("cosine", "constant")
AUGMENTATIONS = ("shift", "affine")  # see modules/model.py and modules/budget.py
# The type of the fields whose default is None (from_dict casts by the default's type).
_OPTIONAL_KINDS: dict[str, object] = {"epochs": 0, "batch_size": 0, "augment": False,
                                      "augmentation": "", "input_blur": 0.0,
                                      "convs_per_block": 0, "precision": "",
                                      "label_smoothing": 0.0}


@dataclasses.dataclass(frozen=True)
class HParams:
    """Everything ``build_model`` and ``run_fn`` need to reproduce a training run."""

    filters_1: int = 32
    filters_2: int = 64
    hidden_units_1: int = 128
    hidden_units_2: int = 64
    dropout: float = 0.25
    learning_rate: float = 1e-3
    # None: chosen from the training split's size by modules/budget.py (set them to override).
    epochs: int | None = None
    batch_size: int | None = None
    augment: bool | None = None
    # Which augmentation when augment is on: "shift" (about one pixel) or "affine" (rotation,
    # zoom and shifts); None: chosen by modules/budget.py from the training images' margins.
    augmentation: str | None = None
    # 3x3 convolutions in each of the two conv blocks; None: chosen by modules/budget.py (two
    # when the model reads its inputs at half resolution, where they cost what one did).
    convs_per_block: int | None = None
    # Gaussian blur (sigma, px) of every served input, half that while training; 0: none; None: chosen by
    # modules/budget.py from the training images' fine detail (smooth scans get 1 px).
    input_blur: float | None = None
    # "float32" or "mixed_bfloat16" (weights stay float32; modules/precision.py); None: chosen by
    # modules/budget.py from the CPU (mixed bfloat16 where it is native).
    precision: str | None = None
    # The share of each training label spread over the other classes (0: none); None: chosen by
    # modules/budget.py (0.1 for data large enough to train without augmentation).
    label_smoothing: float | None = None
    optimizer: str = "adam"  # "adam" or "sgd" (SGD with Nesterov momentum 0.9)
    # "cosine": the learning rate falls from learning_rate to ~0 over the epochs (per epoch);
    # "constant": it stays. Cosine gave Fashion-MNIST 0.919 vs 0.913 at 8 epochs, same time.
    lr_schedule: str = "cosine"

    def __post_init__(self) -> None:
        for name in ("filters_1", "filters_2", "hidden_units_1", "hidden_units_2", "epochs",
                     "batch_size", "convs_per_block"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise ValueError(f"hyperparameter {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"hyperparameter dropout must be in [0, 1), got {self.dropout}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"hyperparameter optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"hyperparameter lr_schedule must be one of {LR_SCHEDULES}, "
                             f"got {self.lr_schedule!r}")
        if self.input_blur is not None and not 0.0 <= self.input_blur <= 3.0:
            raise ValueError(f"hyperparameter input_blur must be in [0, 3] px, got {self.input_blur}")
        if self.label_smoothing is not None and not 0.0 <= self.label_smoothing <= 0.5:
            raise ValueError("hyperparameter label_smoothing must be in [0, 0.5], "
                             f"got {self.label_smoothing}")
        if self.augmentation is not None and self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"hyperparameter augmentation must be one of {AUGMENTATIONS}, "
                             f"got {self.augmentation!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"hyperparameter precision must be one of {PRECISIONS}, "
                             f"got {self.precision!r}")
        if not 0.0 < self.learning_rate <= 1.0:
            raise ValueError(f"hyperparameter learning_rate must be in (0, 1], got {self.learning_rate}")

    @property
    def resolved(self) -> bool:
        """Whether epochs, batch size and augmentation are all set (by flags or the budget)."""
        return None not in (self.epochs, self.batch_size, self.augment)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> HParams:
        """Build from a dict, ignoring unknown keys (KerasTuner adds its own) and casting types."""
        values = values or {}
        kwargs: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name in values and values[field.name] is not None:
                raw = values[field.name]
                default = _OPTIONAL_KINDS.get(field.name, field.default)
                if isinstance(default, bool):
                    kwargs[field.name] = raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
                elif isinstance(default, str):
                    kwargs[field.name] = str(raw)
                elif isinstance(default, int):
                    kwargs[field.name] = int(raw)
                else:
                    kwargs[field.name] = float(raw)
        return cls(**kwargs)

    def replace(self, **changes: Any) -> HParams:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
