"""How long to train, from the data a run reads: ``plan_budget(train_examples, hparams)``.

Pure Python (no TensorFlow): the Trainer, the Tuner and the tests call it.

The rule, the same for every dataset (the embedded ones included), measured on Fashion-MNIST
samples and scikit-learn's digits (docs/training.md has the numbers):

* **Batch size** follows the training split's size: 32 up to 5,000 examples, 64 up to 20,000,
  128 above. On 800 Fashion-MNIST images batch 32 beat 128 by about 2 points at equal epochs;
  on 60k images 128 is as accurate and about twice as fast per epoch on two cores.
* **Epochs**: enough passes for at least ``MIN_STEPS`` optimizer steps, and at least
  ``MIN_EPOCHS`` passes, at most ``MAX_EPOCHS``. Small data thus get many passes (800 images:
  80 epochs of 25 steps), big data few (Fashion-MNIST's 47,957 training images: 10 epochs of
  375 steps).
* **Early stopping** on the eval split's accuracy, with the best epoch's weights restored. It
  watches the second half of the planned epochs only, with a patience of a quarter of them (at
  least ``MIN_PATIENCE``): on 800 Fashion-MNIST images, stopping on the eval loss (patience 10)
  ended at epoch 21-30 of 80 and cost 3-5 points (the loss rises while accuracy still climbs),
  and on accuracy from the start (patience 10) it cost about 1 point; the cosine schedule's
  low-rate final epochs are where small data converge.
* **A time limit** (``--max-train-minutes``) stops training at the end of the batch that crosses
  it (of the group of steps Keras runs in one call: ``modules.model.MAX_STEPS_PER_EXECUTION``),
  keeping the best weights so far.
* **Augmentation** is on when the classes are small: at most ``AUGMENT_MAX_PER_CLASS``
  examples per class. Above that the data vary enough by themselves and augmentation only slows
  convergence. **Which** augmentation follows the training images, not the dataset's name: with
  a median free margin around the ink of at least ``AFFINE_MIN_MARGIN_PX`` pixels
  (``modules/image_profile.py``; digits 3-4 px) the objects survive rotation, zoom, slant and shifts
  of a tenth of the frame ("affine"); objects that fill the frame (Fashion-MNIST: 0 px) get shifts
  of about one pixel ("shift"), as larger transforms cut them.
* **Input blur**: when the training images carry little fine detail (a share of spectral energy
  above half the Nyquist frequency under ``SMOOTH_MAX_DETAIL``: low-resolution scans upscaled,
  as the embedded digits), the model's first layer blurs every input by ``INPUT_BLUR_PX`` at
  serving (and by half that while training: the training images are smooth already), so
  sharper inputs are read at the detail the model learned from;
  it then reads every second pixel (nothing finer is left), and each conv block gets a second
  3x3 convolution, which at half resolution costs what one did at full resolution. Sharp images
  keep one convolution per block at full resolution.
* **Precision**: mixed bfloat16 where the CPU computes it natively (``modules/precision.py``),
  for every size of data, when the convolutions are at least the default width (narrower ones
  fit no faster in it), else float32; the weights and the served model are float32 either
  way. Fits took 0.7-0.85x of float32's time on all of Fashion-MNIST, 1,000 handwritten digits
  and the embedded digits, at about the same accuracy (docs/training.md).
* **Label smoothing** of 0.1 when the run trains without augmentation (more than
  ``AUGMENT_MAX_PER_CLASS`` examples per class): all 60,000 Fashion-MNIST images, three seeds,
  eval 0.9229 against 0.9198 on average and ahead in each, test +0.2 to +0.4 points, the same time.
  With augmentation none (the embedded digits: 0.801, 0.802 against 0.808, 0.811 without).

Any of these set explicitly in ``HParams`` (``--epochs``, ``--batch-size``, ``--[no-]augment``,
``--augmentation``, ``--input-blur``, ``--convs-per-block``, ``--precision``,
``--label-smoothing``) wins over the rule, and the reason says so.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from modules.hparams import HParams
from modules.image_profile import ImageProfile
from modules.precision import native_bfloat16

MIN_STEPS = 2_000
# 10, not 8: with label smoothing all of Fashion-MNIST gained 0.4 points of eval accuracy (three
# seeds, each ahead) for about 20% more Trainer time (docs/training.md, "Ten epochs").
MIN_EPOCHS = 10
MAX_EPOCHS = 100
BATCH_SIZES = ((5_000, 32), (20_000, 64))  # (up to this many examples, batch size)
LARGE_BATCH = 128
# Mixed bfloat16 from this many filters in the second conv block (the default: 64): narrower
# convolutions are too small for it to pay (TFX's 1,000 MNIST records: fit per epoch 0.66-0.85x of
# float32's at 32/64 filters, 0.93-0.97x at 16/32, 1.5x at 8/16).
MIXED_MIN_FILTERS = 64
MIN_PATIENCE = 10
EARLY_STOPPING_MONITOR = "val_sparse_categorical_accuracy"
AUGMENT_MAX_PER_CLASS = 1_000
AFFINE_MIN_MARGIN_PX = 2.0
SMOOTH_MAX_DETAIL = 0.05  # digits 0.026; Fashion-MNIST 0.101; MNIST 0.110 (image_profile.py)
INPUT_BLUR_PX = 1.0
TRAIN_BLUR_FRACTION = 0.5  # the blur while training, as a share of the served one (model.py)
LABEL_SMOOTHING = 0.1  # without augmentation (large classes); Fashion-MNIST 60k: +0.2-0.5 points
HALF_RESOLUTION_BLUR = 1.0  # from this blur on the model reads every second pixel (model.py)
DEFAULT_MAX_TRAIN_MINUTES = 60.0


@dataclasses.dataclass(frozen=True)
class TrainingBudget:
    """The resolved training recipe of one run, and why."""

    train_examples: int
    eval_examples: int
    num_classes: int
    batch_size: int
    epochs: int
    steps_per_epoch: int
    augment: bool
    augmentation: str  # "shift", "affine" or "none"
    image_margin_px: float | None  # the measurement behind ``augmentation`` (None: not measured)
    input_blur: float  # sigma in px of the model's fixed input blur (0: none)
    convs_per_block: int
    image_detail: float | None  # the measurement behind ``input_blur`` (None: not measured)
    precision: str  # "float32" or "mixed_bfloat16" (modules/precision.py)
    label_smoothing: float  # the share of each label spread over the other classes (0: none)
    patience: int
    watch_from_epoch: int  # 0-based: early stopping ignores the epochs before it
    max_train_minutes: float | None
    reason: str

    @property
    def planned_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def apply(self, hparams: HParams) -> HParams:
        """``hparams`` with the budget's epochs, batch size and augmentation filled in."""
        return dataclasses.replace(
            hparams, epochs=self.epochs, batch_size=self.batch_size, augment=self.augment,
            augmentation=self.augmentation if self.augment else hparams.augmentation,
            input_blur=self.input_blur, convs_per_block=self.convs_per_block,
            precision=self.precision, label_smoothing=self.label_smoothing)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["planned_steps"] = self.planned_steps
        return values


def batch_size_for(train_examples: int) -> int:
    for limit, size in BATCH_SIZES:
        if train_examples <= limit:
            return size
    return LARGE_BATCH


def epochs_for(train_examples: int, batch_size: int) -> int:
    steps_per_epoch = max(1, math.ceil(train_examples / batch_size))
    return min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(MIN_STEPS / steps_per_epoch)))


def patience_for(epochs: int) -> int:
    return max(MIN_PATIENCE, epochs // 4)


def plan_budget(train_examples: int, hparams: HParams, *, eval_examples: int = 0,
                num_classes: int = 10,
                max_train_minutes: float | None = DEFAULT_MAX_TRAIN_MINUTES,
                profile: ImageProfile | None = None) -> TrainingBudget:
    """The recipe for ``train_examples`` examples, honouring what ``hparams`` sets explicitly."""
    if train_examples < 1:
        raise ValueError("the training split is empty: nothing to train on")
    if max_train_minutes is not None and max_train_minutes <= 0:
        raise ValueError(f"--max-train-minutes must be > 0, got {max_train_minutes}")
    why: list[str] = [f"{train_examples:,} training examples"]
    if hparams.batch_size is not None:
        batch_size = hparams.batch_size
        why.append(f"batch {batch_size} (set: --batch-size)")
    else:
        batch_size = batch_size_for(train_examples)
        why.append(f"batch {batch_size} (for {_size_band(train_examples)})")
    steps_per_epoch = max(1, math.ceil(train_examples / batch_size))
    if hparams.epochs is not None:
        epochs = hparams.epochs
        why.append(f"{epochs} epochs (set: --epochs or the Tuner)")
    else:
        epochs = epochs_for(train_examples, batch_size)
        floor_epochs = math.ceil(MIN_STEPS / steps_per_epoch)
        if floor_epochs >= MAX_EPOCHS:
            rule = f"{MIN_STEPS:,}-step floor, capped at {MAX_EPOCHS}"
        elif floor_epochs > MIN_EPOCHS:
            rule = f"{MIN_STEPS:,}-step floor"
        else:
            rule = f"{MIN_EPOCHS}-epoch floor"
        why.append(f"{epochs} epochs x {steps_per_epoch} steps ({rule})")
    per_class = train_examples / max(1, num_classes)
    if hparams.augment is not None:
        augment = hparams.augment
        why.append(f"augmentation {'on' if augment else 'off'} (--{'' if augment else 'no-'}augment)")
    else:
        augment = per_class <= AUGMENT_MAX_PER_CLASS
        why.append(f"augmentation {'on' if augment else 'off'} ({per_class:,.0f} per class, "
                   f"{'<=' if augment else '>'} {AUGMENT_MAX_PER_CLASS:,})")
    margin = None if profile is None else profile.margin_px
    detail = None if profile is None else profile.detail
    augmentation, policy_why = augmentation_for(hparams, margin)
    if augment:
        why.append(policy_why)
    input_blur, blur_why = input_blur_for(hparams, detail)
    why.append(blur_why)
    if hparams.convs_per_block is not None:
        convs = hparams.convs_per_block
        why.append(f"{convs} conv(s) per block (set: --convs-per-block)")
    else:
        convs = 2 if input_blur >= HALF_RESOLUTION_BLUR else 1
        why.append("2 convs per block at half resolution" if convs == 2
                   else "1 conv per block at full resolution")
    precision, precision_why = precision_for(hparams)
    why.append(precision_why)
    label_smoothing, smoothing_why = label_smoothing_for(hparams, augment)
    why.append(smoothing_why)
    patience = patience_for(epochs)
    watch_from = epochs // 2
    why.append(f"early stopping on eval accuracy from epoch {watch_from + 1}, patience {patience}")
    if max_train_minutes is not None:
        why.append(f"at most {max_train_minutes:g} min")
    return TrainingBudget(
        train_examples=train_examples, eval_examples=eval_examples, num_classes=num_classes,
        batch_size=batch_size, epochs=epochs, steps_per_epoch=steps_per_epoch, augment=augment,
        augmentation=augmentation if augment else "none", image_margin_px=margin,
        input_blur=input_blur, convs_per_block=convs, image_detail=detail, precision=precision,
        label_smoothing=label_smoothing,
        patience=patience, watch_from_epoch=watch_from, max_train_minutes=max_train_minutes, reason="; ".join(why),
    )


def augmentation_for(hparams: HParams, image_margin_px: float | None) -> tuple[str, str]:
    """Which augmentation ("shift" or "affine") and why, from the images' measured margin."""
    if hparams.augmentation is not None:
        return hparams.augmentation, f"{hparams.augmentation} (set in the hyperparameters)"
    if image_margin_px is None:
        return "shift", "shift (image margins not measured)"
    if image_margin_px >= AFFINE_MIN_MARGIN_PX:
        return "affine", (f"affine: rotation, zoom, slant and shifts, one resampling (ink margin "
                          f"{image_margin_px:g} px >= {AFFINE_MIN_MARGIN_PX:g}: objects sit "
                          "inside the frame)")
    return "shift", (f"shift of ~1 px (ink margin {image_margin_px:g} px < "
                     f"{AFFINE_MIN_MARGIN_PX:g}: objects fill the frame)")


def input_blur_for(hparams: HParams, detail: float | None) -> tuple[float, str]:
    """The model's input blur (sigma px, 0: none) and why, from the images' fine detail."""
    if hparams.input_blur is not None:
        return hparams.input_blur, f"input blur {hparams.input_blur:g} px (set: --input-blur)"
    if detail is None:
        return 0.0, "no input blur (fine detail not measured)"
    if detail < SMOOTH_MAX_DETAIL:
        return INPUT_BLUR_PX, (f"input blur {INPUT_BLUR_PX:g} px when serving, "
                               f"{INPUT_BLUR_PX * TRAIN_BLUR_FRACTION:g} px while training (fine "
                               f"detail {detail:.3f} < {SMOOTH_MAX_DETAIL}: smooth scans, so "
                               "sharp inputs are read at their detail)")
    return 0.0, f"no input blur (fine detail {detail:.3f} >= {SMOOTH_MAX_DETAIL})"


def label_smoothing_for(hparams: HParams, augment: bool) -> tuple[float, str]:
    """The loss's label smoothing and why: ``hparams.label_smoothing`` wins; else
    ``LABEL_SMOOTHING`` when the run trains without augmentation (classes large enough to vary
    by themselves), and none with it, where the random transforms already regularise."""
    if hparams.label_smoothing is not None:
        return hparams.label_smoothing, (f"label smoothing {hparams.label_smoothing:g} "
                                         "(set: --label-smoothing)")
    if augment:
        return 0.0, "no label smoothing (augmentation regularises)"
    return LABEL_SMOOTHING, (f"label smoothing {LABEL_SMOOTHING:g} (no augmentation: it "
                             "regularises instead)")


def precision_for(hparams: HParams, native_flag: str | None = None) -> tuple[str, str]:
    """The Trainer's precision and why: ``hparams.precision`` wins; else mixed bfloat16 when
    the second conv block has at least ``MIXED_MIN_FILTERS`` filters and the CPU has
    ``native_flag`` (default: read from this CPU; modules/precision.py), whatever the data's
    size."""
    if hparams.precision is not None:
        return hparams.precision, f"{hparams.precision} (set: --precision)"
    if hparams.filters_2 < MIXED_MIN_FILTERS:
        return "float32", (f"float32 ({hparams.filters_2} filters in the second conv block < "
                           f"{MIXED_MIN_FILTERS}: too narrow for bfloat16 to pay)")
    flag = native_bfloat16() if native_flag is None else native_flag
    if flag:
        return "mixed_bfloat16", (f"mixed bfloat16 training (the CPU has {flag}; weights and "
                                  "the served model stay float32)")
    return "float32", "float32 (no native bfloat16 on this CPU)"


def _size_band(train_examples: int) -> str:
    low = 0
    for limit, _ in BATCH_SIZES:
        if train_examples <= limit:
            return f"{low:,}-{limit:,} examples" if low else f"<= {limit:,} examples"
        low = limit + 1
    return f"> {BATCH_SIZES[-1][0]:,} examples"
