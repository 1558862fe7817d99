"""The flags every runner shares, turned into a ``PipelineConfig`` (click)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from modules.budget import (
    AUGMENT_MAX_PER_CLASS,
    DEFAULT_MAX_TRAIN_MINUTES,
    MAX_EPOCHS,
    MIN_EPOCHS,
    MIN_STEPS,
)
from modules.hparams import LR_SCHEDULES, HParams
from pipeline import config as cfg

EXAMPLES = """
\b
Examples:
  python -m pipeline.local_runner                          # embedded digits (sklearn), 28x28 PNGs
  python -m pipeline.local_runner --dataset fashion-mnist  # Debian's dataset-fashion-mnist
  python -m pipeline.local_runner --data ~/mnist_png       # <root>/{training,testing}/<digit>/*.png
  python -m pipeline.local_runner --data ./idx --epochs 5 --model-name fashion
  python -m pipeline.local_runner --warm-start --epochs 3  # continue from the latest model
  python -m pipeline.local_runner --deploy --label stable  # deploy a blessed push via the registry
"""


def _hparam_defaults() -> HParams:
    return HParams()


def pipeline_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a click command with every shared pipeline flag."""
    d = _hparam_defaults()
    options = [
        click.option("--data", type=click.Path(exists=True, file_okay=True, dir_okay=True),
                     help="Your own data: an image folder (<root>/<label>/*.png or "
                          "<root>/<split>/<label>/*.png), MNIST IDX files, tf.Example TFRecords "
                          "or IRIS img2tsv/splitter TSVs. Overrides --dataset."),
        click.option("--dataset", type=click.Choice(["digits", "fashion-mnist"]), default=None,
                     help="Embedded data when --data is not given: 'digits' (scikit-learn's "
                          "handwritten digits, default) or 'fashion-mnist' (Debian package "
                          "dataset-fashion-mnist)."),
        click.option("--class-names", default=None, metavar="NAME,NAME,...",
                     help="Names of classes 0..9, comma-separated, stored with the model as "
                          "dict.tsv. Default: zero..nine, Fashion-MNIST's names, or the data's dict.tsv."),
        click.option("--eval-percent", type=int, default=20, show_default=True,
                     help="Share of images in the eval split for inputs without split folders "
                          "(stable hash of the file name)."),
        click.option("--model-name", default="mnist", show_default=True,
                     help="Model name: the TFX pipeline name, the serving_model/ folder and the "
                          "registry name."),
        click.option("--pipeline-root", default="runs/pipeline_root", show_default=True,
                     type=click.Path(), help="Where TFX writes every component's artifacts."),
        click.option("--metadata-path", default=cfg.default_metadata_path, envvar=cfg.ENV_METADATA,
                     show_default="runs/metadata.sqlite",
                     help=f"ML Metadata database: a SQLite file or mysql://user@host:port/db "
                          f"(env {cfg.ENV_METADATA})."),
        click.option("--serving-dir", default=cfg.default_serving_dir, envvar=cfg.ENV_SERVING_DIR,
                     show_default="serving_model", type=click.Path(),
                     help=f"Pusher writes <serving-dir>/<model-name>/<N>/ (env {cfg.ENV_SERVING_DIR})."),
        click.option("--log-dir", default="runs/logs", show_default=True, type=click.Path(),
                     help="Where the full TFX/Beam/TensorFlow log of each run goes."),
        click.option("--epochs", type=click.IntRange(1), default=None,
                     help="Training epochs. Default: from the training split's size, enough for "
                          f"{MIN_STEPS:,} optimizer steps and at least {MIN_EPOCHS} epochs, at "
                          f"most {MAX_EPOCHS}; early stopping may end sooner."),
        click.option("--batch-size", type=click.IntRange(1), default=None,
                     help="Default: from the training split's size (32 up to 5,000 examples, "
                          "64 up to 20,000, then 128)."),
        click.option("--max-train-minutes", type=click.FloatRange(min=0, min_open=True),
                     default=DEFAULT_MAX_TRAIN_MINUTES, show_default=True,
                     help="Stop training after this long (the best epoch's weights are kept)."),
        click.option("--learning-rate", type=float, default=d.learning_rate, show_default=True,
                     help="Adam learning rate (the first epoch's, under --lr-schedule cosine)."),
        click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=d.lr_schedule,
                     show_default=True,
                     help="cosine: the learning rate falls to ~0 over the epochs; constant: it "
                          "stays."),
        click.option("--filters", nargs=2, type=int, default=(d.filters_1, d.filters_2),
                     show_default=True, help="Conv filters of the two conv blocks."),
        click.option("--hidden-units", nargs=2, type=int,
                     default=(d.hidden_units_1, d.hidden_units_2), show_default=True,
                     help="Units of the two dense layers."),
        click.option("--dropout", type=float, default=d.dropout, show_default=True),
        click.option("--augment/--no-augment", default=None,
                     help="Random shifts of about one pixel while training. Default: on when "
                          f"the classes have at most {AUGMENT_MAX_PER_CLASS:,} training "
                          "examples each."),
        click.option("--accuracy-threshold", type=float, default=0.9, show_default=True,
                     help="Bless only models with eval accuracy at least this."),
        click.option("--max-accuracy-drop", type=float, default=0.01, show_default=True,
                     help="Bless only models at most this much less accurate than the last "
                          "blessed one."),
        click.option("--warm-start", is_flag=True,
                     help="Continue training from the latest model's weights (like IRIS "
                          "'fit ... retrain=True')."),
        click.option("--tune", is_flag=True,
                     help="Run the Tuner (KerasTuner) first; the Trainer uses its best "
                          "hyperparameters."),
        click.option("--tune-trials", type=int, default=6, show_default=True,
                     help="Trial budget of --tune."),
        click.option("--in-memory-examples", type=click.IntRange(0),
                     default=cfg.DEFAULT_IN_MEMORY_EXAMPLES,
                     show_default=True,
                     help="The Trainer loads a split into memory (3.1 KB per image) when it has "
                          "at most this many examples, else streams it from disk every epoch."),
        click.option("--cache/--no-cache", default=True, show_default=True,
                     help="Reuse the outputs of components whose inputs did not change."),
        click.option("--deploy", is_flag=True,
                     help="After a blessed push, deploy it with the registry (mlmodel deploy) so "
                          "that 'serving start' serves it."),
        click.option("--label", default="stable", show_default=True,
                     help="Label of the deployment made by --deploy."),
        click.option("--user", default=None, help="User recorded by --deploy (default $USER)."),
        click.option("--verbose", is_flag=True,
                     help="Show TFX's own logs on the terminal instead of only in the log file."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def config_from_options(options: dict[str, Any]) -> cfg.PipelineConfig:
    """A PipelineConfig from the parsed shared flags (unknown keys are ignored)."""
    hparams = HParams(
        filters_1=options["filters"][0], filters_2=options["filters"][1],
        hidden_units_1=options["hidden_units"][0], hidden_units_2=options["hidden_units"][1],
        dropout=options["dropout"], learning_rate=options["learning_rate"],
        epochs=options.get("epochs"), batch_size=options.get("batch_size"),
        lr_schedule=options["lr_schedule"], augment=options.get("augment"),
    )
    class_names = None
    if options.get("class_names"):
        class_names = tuple(n.strip() for n in options["class_names"].split(","))
    return cfg.PipelineConfig(
        model_name=options["model_name"], data=options.get("data"), dataset=options.get("dataset"),
        class_names=class_names, eval_percent=options["eval_percent"],
        pipeline_root=options["pipeline_root"], metadata_path=options["metadata_path"],
        serving_dir=options["serving_dir"], log_dir=options["log_dir"], hparams=hparams,
        accuracy_threshold=options["accuracy_threshold"],
        max_accuracy_drop=options["max_accuracy_drop"], warm_start=options["warm_start"],
        tune=options["tune"], tune_trials=options["tune_trials"], enable_cache=options["cache"],
        in_memory_examples=options["in_memory_examples"],
        max_train_minutes=options.get("max_train_minutes", DEFAULT_MAX_TRAIN_MINUTES),
        deploy_label=options["label"] if options["deploy"] else None, deploy_user=options["user"],
        verbose=options["verbose"],
    )
