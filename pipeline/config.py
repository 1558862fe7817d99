"""Every pipeline setting in one dataclass; the runners' flags are generated from its fields.

Each field that a user sets carries its flag in ``metadata`` (``flag(...)``: help text, and when
needed the flag's names, click type and metavar); ``pipeline/cli_options.py`` builds the click
options from them, with the field's default as the flag's default. A field without a flag of its
own says why (``no_flag(...)``). Env var names and default paths come from ``contracts.settings``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import click

from contracts import settings
from contracts.flags import flag, no_flag
from datasources import storage
from modules.budget import DEFAULT_MAX_TRAIN_MINUTES
from modules.hparams import HParams

DEFAULT_IN_MEMORY_EXAMPLES = 500_000  # images per split the Trainer holds in memory

# Schemes tf.io.gfile implements in this pin set (TensorFlow 2.16.2): gs:// is built in; s3:// and
# hdfs:// raise UnimplementedError (tests/test_object_storage.py checks both facts).
PIPELINE_ROOT_SCHEMES = ("gs",)


class DataLocation(click.ParamType):
    """``--data``: an existing local path, or a URI (``s3://``, ``gs://``...) checked when read."""

    name = "path|uri"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        text = str(value)
        if storage.is_remote(text):
            return text
        local = text[len("file://"):] if text.startswith("file://") else text
        if not os.path.exists(os.path.expanduser(local)):
            self.fail(f"{text!r} does not exist (a local path, or a URI such as "
                      "s3://bucket/mnist_png)", param, ctx)
        return text


def comma_list(value: str | None) -> tuple[str, ...] | None:
    """``'a, b,c'`` -> ``('a', 'b', 'c')``; empty or None -> None."""
    return tuple(name.strip() for name in value.split(",")) if value else None


@dataclasses.dataclass
class PipelineConfig:
    """What to read, where to write, how to train and when to bless."""

    model_name: str = flag(
        "mnist",
        help="Model name: the TFX pipeline name, the serving_model/ folder and the registry name.")
    data: str | None = flag(  # a folder or file of your own; None -> dataset
        None, type=DataLocation(), metavar="PATH|URI",
        help="Your own data: an image folder (<root>/<label>/*.png or "
             "<root>/<split>/<label>/*.png), MNIST IDX files, tf.Example TFRecords or IRIS "
             "img2tsv/splitter TSVs; a local path, or s3://, gs://... (any scheme Beam's "
             "FileSystems reads). Overrides --dataset.")
    s3_endpoint_url: str | None = flag(
        None, metavar="URL", envvar="AWS_ENDPOINT_URL",
        help="An S3-compatible store's endpoint for s3:// data (env AWS_ENDPOINT_URL; "
             "credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE).")
    dataset: str | None = flag(  # the choices are pipeline.datasets.DATASETS (a test checks)
        None, type=click.Choice(["digits", "fashion-mnist"]),
        help="Embedded data when --data is not given: 'digits' (scikit-learn's handwritten "
             "digits, default) or 'fashion-mnist' (Debian package dataset-fashion-mnist).")
    data_root: str = no_flag("where the embedded datasets are materialised", "data")
    class_names: tuple[str, ...] | None = flag(
        None, type=str, metavar="NAME,NAME,...", parse=comma_list,
        help="Names of classes 0..N-1 (2 to 1,000), comma-separated, stored with the model as "
             "dict.tsv. Default: the data's dict.tsv, Fashion-MNIST's names, the label folder "
             "names (sorted), or zero..nine.")
    eval_percent: int = flag(
        20, help="Share of images in the eval split for inputs without split folders (stable "
                 "hash of the file name).")
    pipeline_root: str = flag(settings.DEFAULT_PIPELINE_ROOT, type=click.Path(),
                              help="Where TFX writes every component's artifacts: a local path "
                                   "or gs://... (the schemes tf.io.gfile has here; not s3://).")
    metadata_path: str = flag(
        settings.DEFAULT_METADATA, names=("--metadata", "--metadata-path"),
        envvar=settings.ENV_METADATA, metavar="PATH|URI",
        help="ML Metadata database: a SQLite file or mysql://user@host:port/db "
             f"(env {settings.ENV_METADATA}).")
    serving_dir: str = flag(
        settings.DEFAULT_SERVING_DIR, type=click.Path(), envvar=settings.ENV_SERVING_DIR,
        help=f"Pusher writes <serving-dir>/<model-name>/<N>/ (env {settings.ENV_SERVING_DIR}).")
    log_dir: str = flag(settings.DEFAULT_LOG_DIR, type=click.Path(),
                        help="Where the full TFX/Beam/TensorFlow log of each run goes.")
    # Epochs, batch size and augmentation left None are chosen by the Trainer from the size of
    # the data it reads (modules/budget.py), the same rule for every dataset.
    hparams: HParams = no_flag("one flag per HParams field (pipeline/cli_options.py)",
                               default_factory=HParams)
    max_train_minutes: float | None = flag(  # None: no time limit
        DEFAULT_MAX_TRAIN_MINUTES, type=click.FloatRange(min=0, min_open=True),
        help="Stop training after this long (the best epoch's weights are kept).")
    accuracy_threshold: float = flag(  # value threshold on sparse categorical accuracy
        0.9, help="Bless only models with eval accuracy at least this.")
    max_accuracy_drop: float = flag(  # change threshold vs the last blessed model
        0.01, help="Bless only models at most this much less accurate than the last blessed one.")
    infra_validation: bool = flag(
        True, names=("--infra-validation/--no-infra-validation",),
        help="Before pushing, start `serving start` on the candidate, send it a few eval "
             "examples, and push only if it answers (TFX's InfraValidator; the pushed model "
             "carries them as warm-up requests). Off on kubeflow_runner (docs/serving.md).")
    warm_start: bool = flag(
        False, help="Continue training from the latest model's weights (like IRIS "
                    "'fit ... retrain=True').")
    tune: bool = flag(
        False, help="Run the Tuner (KerasTuner) first; the Trainer uses its best hyperparameters.")
    tune_trials: int = flag(6, help="Trial budget of --tune.")
    # Up to this many examples per split the Trainer holds them in memory as float32 arrays
    # (3.1 KB each: 500k is ~1.6 GB); beyond, it streams them from Transform's files each epoch.
    in_memory_examples: int = flag(
        DEFAULT_IN_MEMORY_EXAMPLES, type=click.IntRange(0),
        help="The Trainer loads a split into memory (3.1 KB per image) when it has at most this "
             "many examples, else streams it from disk every epoch.")
    enable_cache: bool = flag(
        True, names=("--cache/--no-cache",),
        help="Reuse the outputs of components whose inputs did not change.")
    beam_args: list[str] = no_flag("the Beam runner's arguments after --", default_factory=list)
    # --deploy [--label L] [--user U]: deploy blessed pushes via the registry; None: no deploy.
    deploy_label: str | None = no_flag("--deploy and --label (pipeline/cli_options.py)", None)
    deploy_user: str | None = no_flag("--user, with --deploy (pipeline/cli_options.py)", None)
    verbose: bool = flag(
        False, help="Show TFX's own logs on the terminal instead of only in the log file.")

    def __post_init__(self) -> None:
        if not self.model_name or not all(c.isalnum() or c in "-_." for c in self.model_name):
            raise ValueError(
                f"--model-name {self.model_name!r}: use letters, digits, '-', '_' or '.'"
            )
        root_scheme = storage.scheme(self.pipeline_root)
        if root_scheme and root_scheme not in PIPELINE_ROOT_SCHEMES:
            raise ValueError(
                f"--pipeline-root {self.pipeline_root}: TFX writes artifacts through tf.io.gfile, "
                f"and the TensorFlow of this pin set has no {root_scheme}:// filesystem (only "
                f"{', '.join(s + '://' for s in PIPELINE_ROOT_SCHEMES)} and local paths; "
                "tensorflow-io, which adds s3://, has no release for it). Use a local path or "
                "gs://; --data can still be s3://")
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
    def pipeline_root_uri(self) -> str:
        """The pipeline root as TFX gets it: a URI as given, a local path made absolute."""
        if storage.is_remote(self.pipeline_root):
            return self.pipeline_root
        return os.path.abspath(self.pipeline_root)

    @property
    def push_directory(self) -> str:
        return os.path.join(os.path.abspath(self.serving_dir), self.model_name)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["hparams"] = self.hparams.to_dict()
        return values
