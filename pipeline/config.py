"""Every pipeline setting in one dataclass; the runners' flags and env are read here only."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from modules.budget import DEFAULT_MAX_TRAIN_MINUTES
from modules.hparams import HParams

ENV_METADATA = "MNIST_TFX_METADATA"
ENV_SERVING_DIR = "MNIST_TFX_SERVING_DIR"

DEFAULT_IN_MEMORY_EXAMPLES = 500_000  # images per split the Trainer holds in memory


@dataclasses.dataclass
class PipelineConfig:
    """What to read, where to write, how to train and when to bless."""

    model_name: str = "mnist"
    data: str | None = None                 # a folder or file of your own; None -> --dataset
    dataset: str | None = None              # 'digits' (default) or 'fashion-mnist'
    data_root: str = "data"                 # where the embedded default is materialised
    class_names: tuple[str, ...] | None = None
    eval_percent: int = 20                  # for inputs without their own eval split
    pipeline_root: str = "runs/pipeline_root"
    metadata_path: str = "runs/metadata.sqlite"
    serving_dir: str = "serving_model"
    log_dir: str = "runs/logs"
    # Epochs, batch size and augmentation left None are chosen by the Trainer from the size of
    # the data it reads (modules/budget.py), the same rule for every dataset.
    hparams: HParams = dataclasses.field(default_factory=HParams)
    max_train_minutes: float | None = DEFAULT_MAX_TRAIN_MINUTES  # None: no time limit
    accuracy_threshold: float = 0.9          # value threshold on sparse categorical accuracy
    max_accuracy_drop: float = 0.01          # change threshold vs the last blessed model
    warm_start: bool = False
    tune: bool = False
    tune_trials: int = 6
    # Up to this many examples per split the Trainer holds them in memory as float32 arrays
    # (3.1 KB each: 500k is ~1.6 GB); beyond, it streams them from Transform's files each epoch.
    in_memory_examples: int = DEFAULT_IN_MEMORY_EXAMPLES
    enable_cache: bool = True
    beam_args: list[str] = dataclasses.field(default_factory=list)
    deploy_label: str | None = None          # --deploy[=LABEL]: deploy blessed pushes via registry
    deploy_user: str | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        if not self.model_name or not all(c.isalnum() or c in "-_." for c in self.model_name):
            raise ValueError(
                f"--model-name {self.model_name!r}: use letters, digits, '-', '_' or '.'"
            )
        if not 0 < self.eval_percent < 100:
            raise ValueError(f"--eval-percent must be between 1 and 99, got {self.eval_percent}")
        if not 0.0 <= self.accuracy_threshold <= 1.0:
            raise ValueError(f"--accuracy-threshold must be in [0, 1], got {self.accuracy_threshold}")
        if self.max_train_minutes is not None and self.max_train_minutes <= 0:
            raise ValueError(f"--max-train-minutes must be > 0, got {self.max_train_minutes}")
        if self.in_memory_examples < 0:
            raise ValueError(f"--in-memory-examples must be >= 0, got {self.in_memory_examples}")
        if not 0.0 <= self.max_accuracy_drop <= 1.0:
            raise ValueError(f"--max-accuracy-drop must be in [0, 1], got {self.max_accuracy_drop}")

    @property
    def pipeline_name(self) -> str:
        """The TFX pipeline name; one pipeline (and MLMD context) per model name."""
        return self.model_name

    @property
    def push_directory(self) -> str:
        return os.path.join(os.path.abspath(self.serving_dir), self.model_name)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["hparams"] = self.hparams.to_dict()
        return values


def default_metadata_path() -> str:
    return os.environ.get(ENV_METADATA, "runs/metadata.sqlite")


def default_serving_dir() -> str:
    return os.environ.get(ENV_SERVING_DIR, "serving_model")
