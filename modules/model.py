"""``build_model(hparams)``: the CNN, compiled, and nothing else (pure; no TFX, no I/O)."""

from __future__ import annotations

from contracts.runtime import configure_tensorflow

configure_tensorflow()  # Keras 2 before TensorFlow is imported (see contracts/runtime.py)

import dataclasses
import math
import time
from typing import Any

import numpy as np
import tensorflow as tf

from modules import features
from modules.augmentation import augmentation_layers
from modules.budget import (
    EARLY_STOPPING_MONITOR,
    HALF_RESOLUTION_BLUR,
    TRAIN_BLUR_FRACTION,
    TrainingBudget,
)
from modules.hparams import HParams
from modules.training_progress import EpochProgress, estimate_left


def _skip_autograph_for_tf_keras() -> None:
    """Don't let AutoGraph transpile tf_keras's own code (it already skips ``keras``).

    TensorFlow 2.16's AutoGraph lists ``keras`` as a library not to convert, but not the
    ``tf_keras`` package that holds Keras 2. Without this, the first ``fit`` in every process
    spends ~35 s converting about 400 Keras internals (measured here). tf_keras's code is Keras
    2's code, written to run unconverted, exactly as under ``keras``.
    """
    from tensorflow.python.autograph.core import config

    rule = config.DoNotConvert("tf_keras")
    if all(getattr(r, "_prefix", None) != "tf_keras" for r in config.CONVERSION_RULES):
        config.CONVERSION_RULES = (rule, *config.CONVERSION_RULES)


_skip_autograph_for_tf_keras()


def gaussian_kernel(sigma: float) -> np.ndarray:
    """A normalised 2-D Gaussian, (k, k, 1, 1) for a depthwise conv, radius ceil(3 sigma)."""
    radius = max(1, math.ceil(3 * sigma))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    line = np.exp(-(t**2) / (2 * sigma**2))
    kernel = np.outer(line, line)
    return (kernel / kernel.sum()).astype(np.float32)[:, :, None, None]


def input_stride(sigma: float) -> int:
    """2 (read every second pixel) when a blur of ``sigma`` px leaves nothing finer for it."""
    return 2 if sigma >= HALF_RESOLUTION_BLUR else 1


class InputBlur(tf.keras.layers.Layer):
    """A fixed (not trained) Gaussian blur, the model's first layer: ``sigma`` px at inference
    (serving, evaluation), ``sigma * TRAIN_BLUR_FRACTION`` while training.

    From ``HALF_RESOLUTION_BLUR`` px on it also samples every second pixel: such a blur removes
    the detail a 14x14 grid cannot hold, so the half-resolution read loses nothing and every
    convolution after it costs a quarter (two convs per block then cost what one did at 28x28).
    Embedded digits, 40 epochs, affine: a 1-px blur at full resolution gave MNIST test 0.840 in
    87 s of training, at half resolution 0.831 in 45 s (docs/training.md).

    Why a lighter blur while training: the training images it is chosen for are already smooth
    (that is why it is on), so blurring them by the full sigma trained the model on images
    blurrier than the sharp inputs it then serves, once blurred. Embedded digits, MNIST test,
    three seeds: the same blur in both 0.804, 0.737, 0.810; 0.5 px while training 0.808, 0.811,
    0.809; none while training 0.806, 0.794, 0.798 (docs/training.md).
    """

    def __init__(self, sigma: float, train_sigma: float | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("name", "input_blur")
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.sigma = float(sigma)
        self.train_sigma = self.sigma * TRAIN_BLUR_FRACTION if train_sigma is None else float(train_sigma)
        self.stride = input_stride(self.sigma)
        serve = gaussian_kernel(self.sigma)
        self._serve = tf.constant(serve)
        self._train = tf.constant(_centred(gaussian_kernel(self.train_sigma)
                                           if self.train_sigma > 0 else np.ones((1, 1, 1, 1),
                                                                               np.float32),
                                           serve.shape[0]))

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        kernel = self._train if training else self._serve
        return tf.nn.depthwise_conv2d(inputs, kernel, [1, self.stride, self.stride, 1], "SAME")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "sigma": self.sigma, "train_sigma": self.train_sigma}


def _centred(kernel: np.ndarray, size: int) -> np.ndarray:
    """``kernel`` (k, k, 1, 1) zero-padded to (size, size, 1, 1), centred (k <= size, both odd)."""
    pad = (size - kernel.shape[0]) // 2
    return np.pad(kernel, ((pad, pad), (pad, pad), (0, 0), (0, 0))).astype(np.float32)


def build_model(hparams: HParams | None = None,
                num_classes: int = len(features.DIGIT_CLASS_NAMES),
                steps_per_execution: int = 1) -> tf.keras.Model:
    """A small CNN for 28x28x1 images in [0, 1] -> softmax over ``num_classes`` (from the data).

    Two conv blocks (3x3 conv ``filters_1`` / ``filters_2``, batch norm, ReLU, 2x2 max pool), then
    two dense layers (``hidden_units_1/2``) with dropout. One conv per block keeps an epoch over
    60k images near half a minute on two CPU cores. With ``augment`` the model starts with the random
    transforms of ``hp.augmentation`` (``modules/augmentation.py``), active only while training,
    so serving sees the identity.

    ``steps_per_execution`` optimizer steps run in one call of the compiled training function
    (Keras' ``compile`` option): the same steps and the same weights, without the per-step Python
    overhead that is a sixth of a small model's step (``execution_steps``). It needs data whose
    size Keras knows (arrays, not a stream of unknown length).
    """
    hp = hparams or HParams()
    if not features.MIN_CLASSES <= num_classes <= features.MAX_CLASSES:
        raise ValueError(f"num_classes must be {features.MIN_CLASSES}..{features.MAX_CLASSES}, "
                         f"got {num_classes}")
    keras = tf.keras
    # The convolutions and dense layers compute in hp.precision; the input layers (blur,
    # augmentation) and the softmax stay float32, as do all weights (modules/precision.py).
    compute = keras.mixed_precision.Policy(hp.precision or "float32")
    inputs = keras.Input(shape=features.IMAGE_SHAPE, name=features.INPUT_IMAGES, dtype=tf.float32)
    x = inputs
    if hp.input_blur:  # at serving too (lighter while training): sharp inputs read at the training detail
        x = InputBlur(hp.input_blur)(x)
    if hp.augment is not False:  # None (not yet chosen by the budget) means the default: on
        for layer in augmentation_layers(hp.augmentation or "shift"):
            x = layer(x)
    for block, filters in enumerate((hp.filters_1, hp.filters_2), start=1):
        for conv in range(hp.convs_per_block or 1):  # None (no budget yet): one
            suffix = f"{block}" if conv == 0 else f"{block}_{conv + 1}"
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                    name=f"conv{suffix}", dtype=compute)(x)
            # momentum 0.9, not Keras' 0.99: with 0.99 the moving statistics still carried ~10%
            # of their initial values after the ~220 steps of a 20-epoch digits run, and the
            # served model was under-confident (eval cross-entropy 1.03 at 97.9% accuracy).
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{suffix}",
                                                dtype=compute)(x)
            x = keras.layers.Activation("relu", name=f"relu{suffix}", dtype=compute)(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{block}", dtype=compute)(x)
    x = keras.layers.Flatten(dtype=compute)(x)
    for layer, units in enumerate((hp.hidden_units_1, hp.hidden_units_2), start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden{layer}", dtype=compute)(x)
        x = keras.layers.Dropout(hp.dropout, name=f"dropout{layer}", dtype=compute)(x)
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", name=features.OUTPUT_PROBABILITIES, dtype="float32"
    )(x)
    model = keras.Model(inputs, outputs, name="mnist_cnn")
    model.compile(
        optimizer=_optimizer(hp),
        loss=(SmoothedSparseCrossentropy(hp.label_smoothing, num_classes)
              if hp.label_smoothing else "sparse_categorical_crossentropy"),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="sparse_categorical_accuracy")],
        steps_per_execution=steps_per_execution,
    )
    return model


@tf.keras.utils.register_keras_serializable(package="mnist_tfx")
class SmoothedSparseCrossentropy(tf.keras.losses.Loss):
    """Cross-entropy against integer labels with label smoothing: each target puts
    ``1 - smoothing`` on its class and spreads ``smoothing`` evenly over all ``num_classes``.

    Written here because Keras 2's sparse loss has no smoothing (only the one-hot
    ``CategoricalCrossentropy`` has it); this one-hot encodes and calls that loss's function,
    so the labels stay integers everywhere else (Transform, the metrics, TFMA).
    """

    def __init__(self, smoothing: float, num_classes: int,
                 name: str = "smoothed_sparse_crossentropy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.smoothing = float(smoothing)
        self.num_classes = int(num_classes)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        labels = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), self.num_classes,
                            dtype=y_pred.dtype)
        return tf.keras.losses.categorical_crossentropy(labels, y_pred,
                                                        label_smoothing=self.smoothing)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "smoothing": self.smoothing,
                "num_classes": self.num_classes}


def float32_twin(model: tf.keras.Model, hparams: HParams, num_classes: int) -> tf.keras.Model:
    """``model`` itself when it computes in float32; else the same network built in float32
    with ``model``'s weights (which mixed precision keeps in float32): what is exported."""
    if (hparams.precision or "float32") == "float32":
        return model
    twin = build_model(dataclasses.replace(hparams, precision="float32"), num_classes)
    twin.set_weights(model.get_weights())
    return twin


def _optimizer(hp: HParams) -> tf.keras.optimizers.Optimizer:
    if hp.optimizer == "sgd":
        return tf.keras.optimizers.SGD(learning_rate=hp.learning_rate, momentum=0.9, nesterov=True)
    return tf.keras.optimizers.Adam(learning_rate=hp.learning_rate)


def epoch_learning_rate(hp: HParams, epoch: int) -> float:
    """The learning rate of ``epoch`` (0-based) under ``hp.lr_schedule``."""
    if hp.epochs is None:
        raise ValueError("epoch_learning_rate needs resolved epochs (see modules.budget)")
    if hp.lr_schedule == "constant" or hp.epochs <= 1:
        return hp.learning_rate
    return hp.learning_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / hp.epochs))


def schedule_callbacks(hp: HParams) -> list[tf.keras.callbacks.Callback]:
    """What ``fit`` needs for ``hp.lr_schedule`` (Trainer, Tuner and the benchmark's baseline)."""
    if hp.lr_schedule == "constant":
        return []
    return [tf.keras.callbacks.LearningRateScheduler(lambda epoch: epoch_learning_rate(hp, epoch))]


class TimeLimit(tf.keras.callbacks.Callback):
    """Stop training at the end of the batch that crosses ``minutes`` (``--max-train-minutes``).

    Keras calls it after each group of ``steps_per_execution`` steps (``execution_steps``)."""

    def __init__(self, minutes: float | None) -> None:
        super().__init__()
        self.seconds = None if minutes is None else minutes * 60.0
        self.started = 0.0
        self.stopped_epoch: int | None = None  # 0-based epoch during which the limit was hit
        self._epoch = 0

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        self.started = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        if self.seconds is not None and time.monotonic() - self.started >= self.seconds:
            if self.stopped_epoch is None:
                self.stopped_epoch = self._epoch
            self.model.stop_training = True


FLOAT32_SLACK = 1e-6  # a few float32 ulps of an accuracy near 1 (about 6e-8 each)


class LaterTiesEarlyStopping(tf.keras.callbacks.EarlyStopping):
    """Early stopping where an epoch within ``tolerance`` of the best eval accuracy (the budget:
    one eval example) counts as the new best epoch; the best accuracy itself never goes down.

    A saturated eval split (the embedded digits: 0.997-1.000 from about epoch 12) otherwise keeps
    the first epoch that reached it, mid-schedule at a high learning rate: `make run`'s model then
    read MNIST's test digits at 0.720 (kept epoch 25 of 45) against 0.831 after the cosine
    schedule's low-rate epochs, at the same eval accuracy. A near-tie also restarts the patience.
    """

    def __init__(self, *, tolerance: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tolerance = tolerance

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        self.wait += 1
        # FLOAT32_SLACK: Keras logs accuracy as float32, so an epoch exactly one example below
        # the best could miss the tolerance by rounding (a `make run` in CI stopped at epoch 37
        # of 45 on epochs 380/382 against a best of 381/382, and kept epoch 26).
        if self.best_weights is None or current >= self.best - self.tolerance - FLOAT32_SLACK:
            self.best = current if self.best_weights is None else max(self.best, current)
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True


# Optimizer steps per call of the compiled training function, at most: a small model's step is
# ~13 ms of which ~2 ms are Keras' Python per step (1,000 handwritten digits, batch 32: fit 22.8 s
# instead of 25.8-28.5 s, the same weights). Callbacks that look at batches (the time limit) see
# every group of steps instead: at batch 128 on all of Fashion-MNIST a group is about 1 s.
MAX_STEPS_PER_EXECUTION = 32


def execution_steps(steps_per_epoch: int) -> int:
    """Steps per execution for an epoch of ``steps_per_epoch``: the whole epoch up to the cap."""
    return max(1, min(steps_per_epoch, MAX_STEPS_PER_EXECUTION))


def budget_callbacks(budget: TrainingBudget) -> tuple[tf.keras.callbacks.EarlyStopping, TimeLimit]:
    """Early stopping on eval accuracy (best weights restored) and the time limit of ``budget``."""
    early = LaterTiesEarlyStopping(
        tolerance=1.0 / budget.eval_examples if budget.eval_examples else 0.0,
        monitor=EARLY_STOPPING_MONITOR, mode="max", patience=budget.patience,
        start_from_epoch=budget.watch_from_epoch, restore_best_weights=True)
    return early, TimeLimit(budget.max_train_minutes)


class ProgressFile(tf.keras.callbacks.Callback):
    """Append an ``EpochProgress`` line to ``path`` after every epoch (the runner shows it)."""

    def __init__(self, path: str, epochs: int, max_train_minutes: float | None) -> None:
        super().__init__()
        self.path = path
        self.epochs = epochs
        self.limit = None if max_train_minutes is None else max_train_minutes * 60.0
        self.started = 0.0
        self.best: tuple[float, int] | None = None

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        accuracy = (logs or {}).get(EARLY_STOPPING_MONITOR)
        if accuracy is not None and (self.best is None or accuracy > self.best[0]):
            self.best = (float(accuracy), epoch + 1)
        seconds = time.monotonic() - self.started
        record = EpochProgress(
            epoch=epoch + 1, epochs=self.epochs,
            eval_accuracy=None if accuracy is None else float(accuracy),
            best_accuracy=None if self.best is None else self.best[0],
            best_epoch=None if self.best is None else self.best[1], seconds=seconds,
            seconds_left=estimate_left(epoch + 1, self.epochs, seconds, self.limit))
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(record.to_line())
        except OSError:  # progress is a courtesy: never fail a training run over it
            pass
