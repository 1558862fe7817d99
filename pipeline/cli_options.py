"""The flags every runner shares, generated from the fields of ``PipelineConfig`` and ``HParams``.

One source: a flag's default is its field's default, never retyped here. ``PipelineConfig``
fields carry their flag in ``metadata`` (pipeline/config.py). ``HParams`` lives in ``modules/``
(the user code TFX hashes), so its flags are described here, by field name (``HPARAM_FLAGS``).
Three small adapters cover what is not one flag per field: ``--filters A B`` and
``--hidden-units A B`` (two fields each) and ``--deploy``/``--label``/``--user``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import click

from contracts.flags import FLAG, NO_FLAG, Flag, field_default, option_spec, values_from_options
from modules.budget import (
    AUGMENT_MAX_PER_CLASS,
    LABEL_SMOOTHING,
    MAX_EPOCHS,
    MIN_EPOCHS,
    MIN_STEPS,
)
from modules.hparams import AUGMENTATIONS, LR_SCHEDULES, HParams
from modules.precision import PRECISIONS
from pipeline.config import PipelineConfig

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

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

# HParams fields with a flag of their own; the default is HParams()'s.
HPARAM_FLAGS: dict[str, Flag] = {
    "epochs": Flag(
        type=click.IntRange(1),
        help="Training epochs. Default: from the training split's size, enough for "
             f"{MIN_STEPS:,} optimizer steps and at least {MIN_EPOCHS} epochs, at most "
             f"{MAX_EPOCHS}; early stopping may end sooner."),
    "batch_size": Flag(
        type=click.IntRange(1),
        help="Default: from the training split's size (32 up to 5,000 examples, 64 up to "
             "20,000, then 128)."),
    "learning_rate": Flag(
        help="Adam learning rate (the first epoch's, under --lr-schedule cosine)."),
    "lr_schedule": Flag(
        type=click.Choice(LR_SCHEDULES),
        help="cosine: the learning rate falls to ~0 over the epochs; constant: it stays."),
    "dropout": Flag(help="Dropout rate after each of the two dense layers."),
    "augment": Flag(
        names=("--augment/--no-augment",),
        help="Random transforms of the training images (see --augmentation). Default: on when "
             f"the classes have at most {AUGMENT_MAX_PER_CLASS:,} training examples each."),
    "augmentation": Flag(
        type=click.Choice(AUGMENTATIONS),
        help="shift: about one pixel; affine: rotation, zoom, slant and shifts (about a tenth), "
             "resampled once. Default: "
             "from the training images (affine when the objects have room around them)."),
    "convs_per_block": Flag(type=click.IntRange(1), help="3x3 convolutions per conv block."),
    "input_blur": Flag(
        type=click.FloatRange(0.0, 3.0),
        help="Gaussian blur (sigma, px) of every served input (half that while training, where "
             "the images are smooth already); 0: none. Default: 1 px when "
             "the training images carry little fine detail (upscaled scans), else none."),
    "label_smoothing": Flag(
        type=click.FloatRange(0.0, 0.5),
        help="The share of each training label spread over all classes (0: none). Default: "
             f"{LABEL_SMOOTHING:g} when the run trains without augmentation (large classes), "
             "else none."),
    "precision": Flag(
        type=click.Choice(PRECISIONS),
        help="The Trainer's number format: mixed_bfloat16 computes the layers in bfloat16 "
             "(weights, softmax and the served model stay float32). Default: mixed_bfloat16 "
             "on a CPU with native bfloat16 (avx512_bf16 or AMX) for convolutions of the default "
             "width or wider (64+ filters in the second block), else float32."),
}
# One flag, two HParams fields: --filters A B sets filters_1 and filters_2.
HPARAM_PAIRS: dict[str, tuple[tuple[str, str], str]] = {
    "filters": (("filters_1", "filters_2"), "Conv filters of the two conv blocks."),
    "hidden_units": (("hidden_units_1", "hidden_units_2"), "Units of the two dense layers."),
}
HPARAMS_WITHOUT_FLAG = {"optimizer": "Adam; the Tuner's search fixes SGD (modules/tuning.py)"}

DEFAULT_DEPLOY_LABEL = "stable"


def pipeline_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a click command with every shared pipeline flag, in PipelineConfig's order."""
    options = [option for field in dataclasses.fields(PipelineConfig)
               for option in _field_options(field)]
    for option in reversed(options):
        command = option(command)
    return command


def config_from_options(options: dict[str, Any]) -> PipelineConfig:
    """A PipelineConfig from the parsed shared flags (unknown keys are ignored, missing ones
    keep the dataclass default)."""
    values = values_from_options(PipelineConfig, options)
    return PipelineConfig(**values, hparams=hparams_from_options(options),
                          **_deploy_values(options))


def hparams_from_options(options: dict[str, Any]) -> HParams:
    """HParams from the parsed flags: HPARAM_FLAGS one to one, HPARAM_PAIRS two fields each."""
    values = {name: options[name] for name in HPARAM_FLAGS if name in options}
    for pair, (fields, _help) in HPARAM_PAIRS.items():
        if pair in options:
            values.update(zip(fields, options[pair], strict=True))
    return HParams(**values)


def _field_options(field: dataclasses.Field[Any]) -> list[Decorator]:
    """The click options that set one PipelineConfig field (none for internal fields)."""
    spec: Flag | None = field.metadata.get(FLAG)
    if spec is not None:
        return [_option(field.name, spec, field_default(field))]
    if field.name == "hparams":
        return _hparam_options()
    if field.name == "deploy_label":
        return _deploy_options()
    if NO_FLAG in field.metadata:
        return []
    raise TypeError(f"PipelineConfig.{field.name} has no flag: give it flag(help=...) or "
                    "no_flag(why) in pipeline/config.py")


def _option(name: str, spec: Flag, default: Any) -> Decorator:
    """One click option; ``name`` (the field) is where click stores the value."""
    names, kwargs = option_spec(name, spec, default)
    return click.option(*names, **kwargs)


def _hparam_options() -> list[Decorator]:
    """HParams' flags in HParams' field order; a field nobody decided on is an error."""
    defaults = HParams()
    paired = {fields[0]: pair for pair, (fields, _help) in HPARAM_PAIRS.items()}
    seconds = {fields[1] for fields, _help in HPARAM_PAIRS.values()}
    options = []
    for field in dataclasses.fields(HParams):
        if field.name in HPARAM_FLAGS:
            options.append(_option(field.name, HPARAM_FLAGS[field.name],
                                   getattr(defaults, field.name)))
        elif field.name in paired:
            options.append(_pair_option(paired[field.name], defaults))
        elif field.name not in seconds and field.name not in HPARAMS_WITHOUT_FLAG:
            raise TypeError(f"HParams.{field.name} has no flag: add it to HPARAM_FLAGS or "
                            "HPARAMS_WITHOUT_FLAG in pipeline/cli_options.py")
    return options


def _pair_option(pair: str, defaults: HParams) -> Decorator:
    fields, help_text = HPARAM_PAIRS[pair]
    return click.option("--" + pair.replace("_", "-"), pair, nargs=2, type=int, show_default=True,
                        default=tuple(getattr(defaults, field) for field in fields), help=help_text)


def _deploy_options() -> list[Decorator]:
    """--deploy [--label L] [--user U] -> deploy_label (None: no deploy) and deploy_user."""
    return [
        click.option("--deploy", is_flag=True,
                     help="After a blessed push, deploy it with the registry (mlmodel deploy) so "
                          "that 'serving start' serves it."),
        click.option("--label", default=DEFAULT_DEPLOY_LABEL, show_default=True,
                     help="Label of the deployment made by --deploy."),
        click.option("--user", default=None, help="User recorded by --deploy (default $USER)."),
    ]


def _deploy_values(options: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if "deploy" in options:
        values["deploy_label"] = options.get("label", DEFAULT_DEPLOY_LABEL) if options["deploy"] else None
    if "user" in options:
        values["deploy_user"] = options["user"]
    return values
