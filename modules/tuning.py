"""TFX Tuner entry point (``tuner_fn``): KerasTuner over seed 002's search space, for our CNN.

Seed 002 tunes num_hidden_layer_1/2 (64..256 step 64), dropout, learning_rate (0.01..0.1) and
epoch toward accuracy 0.965. Here: ``hidden_units_1/2`` 64..256 step 64, ``dropout`` 0.1..0.5,
``learning_rate`` 0.01..0.1 (log) with SGD + Nesterov momentum (the range suits SGD, not Adam),
and ``epochs`` between half and all of the pipeline's epochs. Objective: validation accuracy.
The best values go to the Trainer through the Tuner's ``best_hyperparameters`` artifact.
"""

from __future__ import annotations

from contracts.runtime import configure_tensorflow

configure_tensorflow()  # Keras 2 before TensorFlow is imported (see contracts/runtime.py)

import os
from typing import Any

import keras_tuner
import tensorflow as tf

from modules import features
from modules.hparams import HParams
from modules.model import build_model, schedule_callbacks
from modules.trainer import (
    in_memory_fit_data,
    in_memory_limit,
    load_arrays,
    plan_for,
    resolve_hparams,
)

OBJECTIVE = "val_sparse_categorical_accuracy"


def search_space(base: HParams) -> keras_tuner.HyperParameters:
    """Seed 002's space, expressed for our CNN around the pipeline's own hyperparameters."""
    hp = keras_tuner.HyperParameters()
    hp.Int("hidden_units_1", 64, 256, step=64)
    hp.Int("hidden_units_2", 64, 256, step=64)
    hp.Float("dropout", 0.1, 0.5, step=0.1)
    hp.Float("learning_rate", 0.01, 0.1, sampling="log")
    hp.Fixed("optimizer", "sgd")
    if base.epochs is None:
        raise ValueError("search_space needs resolved epochs (see modules.budget)")
    low = max(1, base.epochs // 2)
    if low < base.epochs:
        hp.Int("epochs", low, base.epochs)
    else:
        hp.Fixed("epochs", base.epochs)
    return hp


class _ForwardCallback(tf.keras.callbacks.Callback):
    """A tf_keras callback that forwards to one of KerasTuner's Keras 3 callbacks."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner

    def set_model(self, model: tf.keras.Model) -> None:
        super().set_model(model)
        self.inner.set_model(model)

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        self.inner.set_params(params)


def _forward(hook: str) -> Any:
    def call(self: _ForwardCallback, *args: Any, **kwargs: Any) -> None:
        getattr(self.inner, hook)(*args, **kwargs)

    return call


for _hook in ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
              "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end"):
    setattr(_ForwardCallback, _hook, _forward(_hook))


def trial_early_stopping(epochs: int) -> tf.keras.callbacks.EarlyStopping:
    """Stop a trial whose objective has not improved for a quarter of its epochs (at least 3),
    watching the second half only (as the Trainer's budget does): a bad trial then costs a
    fraction of a good one. The trial reports its best epoch either way."""
    return tf.keras.callbacks.EarlyStopping(
        monitor=OBJECTIVE, mode="max", patience=max(3, epochs // 4),
        start_from_epoch=epochs // 2)


class CnnHyperModel(keras_tuner.HyperModel):
    """Builds our CNN from a trial's values; fits it for the trial's number of epochs."""

    def __init__(self, base: HParams, num_classes: int = len(features.DIGIT_CLASS_NAMES)) -> None:
        super().__init__(name="mnist_cnn")
        self.base = base
        self.num_classes = num_classes

    def trial_hparams(self, hp: keras_tuner.HyperParameters) -> HParams:
        return HParams.from_dict({**self.base.to_dict(), **hp.values})

    def build(self, hp: keras_tuner.HyperParameters) -> tf.keras.Model:
        return build_model(self.trial_hparams(hp), num_classes=self.num_classes)

    def fit(self, hp: keras_tuner.HyperParameters, model: tf.keras.Model, *args: Any,
            **kwargs: Any) -> Any:
        hparams = self.trial_hparams(hp)
        kwargs["epochs"] = hparams.epochs
        # tuner_fn's arrays, batched at the trial's size as the Trainer does (one iterator a fit)
        kwargs.update(in_memory_fit_data((kwargs.pop("x"), kwargs.pop("y")),
                                         kwargs.pop("validation_data"), hparams.batch_size))
        # KerasTuner's own callbacks are Keras 3 objects; tf_keras's fit needs tf_keras ones.
        kwargs["callbacks"] = [c if isinstance(c, tf.keras.callbacks.Callback) else _ForwardCallback(c)
                               for c in kwargs.get("callbacks") or []] + schedule_callbacks(hparams)
        kwargs["callbacks"].append(trial_early_stopping(hparams.epochs or 1))
        history = model.fit(*args, **kwargs).history
        # KerasTuner accepts a Keras 3 History or a dict: report the best epoch's metrics (what it
        # would read from a History for a "max" objective).
        best = max(range(len(history[OBJECTIVE])), key=lambda i: history[OBJECTIVE][i])
        return {name: float(values[best]) for name, values in history.items()}


class TfKerasRandomSearch(keras_tuner.RandomSearch):
    """RandomSearch over tf_keras models.

    KerasTuner 1.4 imports the ``keras`` package (Keras 3, installed beside tf_keras) and rejects
    any model that is not a Keras 3 ``Model``; our models are tf_keras (Keras 2) on purpose.
    """

    def _try_build(self, hp: keras_tuner.HyperParameters) -> tf.keras.Model:
        tf.keras.backend.clear_session()
        model = self._build_hypermodel(hp)
        if not isinstance(model, tf.keras.Model):
            raise keras_tuner.errors.FatalTypeError(
                f"HyperModel.build() must return a tf.keras Model, got {type(model)}")
        return model


def tuner_fn(fn_args: Any) -> Any:
    """Called by TFX's Tuner: a RandomSearch tuner and the data to fit it on."""
    import tensorflow_transform as tft
    from tfx.components.tuner.component import TunerFnResult

    custom_config = fn_args.custom_config or {}
    base = resolve_hparams(custom_config)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    limit = in_memory_limit(custom_config)
    train = load_arrays(fn_args.train_files, tf_transform_output, limit)
    evaluation = load_arrays(fn_args.eval_files, tf_transform_output, limit)
    if train is None or evaluation is None:
        raise ValueError(f"--tune loads the data into memory and a split has more than {limit} "
                         "examples (--in-memory-examples): raise it or tune on a sample")
    class_names = tuple(custom_config.get("class_names") or features.DIGIT_CLASS_NAMES)
    base = plan_for(custom_config, base, len(train[1]), len(evaluation[1]), class_names,
                    train[0]).apply(base)
    tuner = TfKerasRandomSearch(
        CnnHyperModel(base, num_classes=len(class_names)),
        hyperparameters=search_space(base),
        objective=keras_tuner.Objective(OBJECTIVE, direction="max"),
        max_trials=int(custom_config.get("max_trials", 6)),
        directory=os.path.abspath(fn_args.working_dir),
        project_name="mnist_tuning",
        seed=int(custom_config.get("seed", 42)),
        overwrite=True,
    )
    return TunerFnResult(
        tuner=tuner,
        fit_kwargs={"x": train[0], "y": train[1], "validation_data": evaluation, "verbose": 2},
    )
