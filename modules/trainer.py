"""TFX Trainer entry point (``run_fn``): fit the CNN on Transform's output and export it.

Called by TFX's GenericExecutor as ``modules.trainer.run_fn``. Everything the run needs arrives in
``fn_args.custom_config`` (see ``pipeline/pipeline.py``): ``hparams``, ``class_names``,
``model_name``, ``max_train_minutes``; with ``--tune`` the Tuner's best hyperparameters override
``hparams``. Epochs, batch size and augmentation left unset are chosen from the training split's
size by ``modules.budget.plan_budget``; the budget and why go into the training summary.

Side outputs, all inside the Model artifact's directory (``dirname(serving_model_dir)``):
* ``keras/weights.h5``: the Keras weights, used by ``--warm-start`` runs as their starting point;
* ``training_summary.json``: the effective hparams, the budget (and what stopped training),
  example counts, seconds, per-epoch history. The Trainer
  executor copies it into MLMD custom properties.
TensorBoard logs go to the ModelRun artifact (``fn_args.model_run_dir``).
"""

from __future__ import annotations

from contracts.runtime import configure_tensorflow

configure_tensorflow()  # Keras 2 before TensorFlow is imported (see contracts/runtime.py)

import json
import logging
import math
import os
import time
from typing import Any

import numpy as np
import tensorflow as tf

from contracts.training import TRAINING_SUMMARY_FILE
from modules import features
from modules.budget import DEFAULT_MAX_TRAIN_MINUTES, TrainingBudget, plan_budget
from modules.hparams import HParams
from modules.image_profile import SAMPLE, measure
from modules.model import (
    ProgressFile,
    budget_callbacks,
    build_model,
    execution_steps,
    float32_twin,
    schedule_callbacks,
)
from modules.signatures import export_serving_model
from modules.training_progress import PROGRESS_ENV

KERAS_WEIGHTS_RELPATH = os.path.join("keras", "weights.h5")

# Up to this many transformed examples are loaded into memory once and fit from numpy arrays
# (exactly as plain Keras would); above it, the data are streamed from the TFRecords every epoch.
IN_MEMORY_LIMIT = 500_000  # default of custom_config["in_memory_examples"]


def in_memory_limit(custom_config: dict[str, Any]) -> int:
    return int(custom_config.get("in_memory_examples", IN_MEMORY_LIMIT))


def load_arrays(file_pattern: list[str], tf_transform_output: Any,
                limit: int) -> tuple[np.ndarray, np.ndarray] | None:
    """All transformed (image, label) pairs as numpy arrays, or None when there are too many.

    Reads Transform's TFRecords with plain tf.data and one vectorised ``parse_example`` per 8k
    records: for 70k images that is a few seconds, against ~30 s through tfxio's RecordBatches.
    """
    # TFX's data_accessor is not used: the files are tf.Examples written by Transform, parsed
    # directly below.
    spec = tf_transform_output.transformed_feature_spec()
    spec = {features.IMAGE_XF_KEY: spec[features.IMAGE_XF_KEY],
            features.LABEL_XF_KEY: spec[features.LABEL_XF_KEY]}
    dataset = (_records(_files(file_pattern))
               .batch(8192)
               .map(lambda records: tf.io.parse_example(records, spec),
                    num_parallel_calls=tf.data.AUTOTUNE)
               .prefetch(2))
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    count = 0
    for batch in dataset:
        images.append(batch[features.IMAGE_XF_KEY].numpy())
        labels.append(np.reshape(batch[features.LABEL_XF_KEY].numpy(), [-1]))
        count += len(labels[-1])
        if count > limit:
            return None
    x = np.concatenate(images).reshape([-1, *features.IMAGE_SHAPE]).astype(np.float32)
    return x, np.concatenate(labels).astype(np.int64)


def _files(file_pattern: list[str]) -> list[str]:
    files = sorted(f for pattern in file_pattern for f in tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(f"no transformed examples match {file_pattern}: the split is empty")
    return files


def _records(files: list[str]) -> tf.data.TFRecordDataset:
    return tf.data.TFRecordDataset(files, compression_type="GZIP" if files[0].endswith(".gz")
                                   else "")


EVAL_BATCH = 256  # examples per eval step: inference only, so the batch does not change the result


def _repeated(arrays: tuple[np.ndarray, np.ndarray], batch_size: int,
              shuffle: bool) -> tuple[tf.data.Dataset, int]:
    """In-memory (images, labels) as an endless dataset of batches, and the steps of one pass."""
    images, labels = tf.constant(arrays[0]), tf.constant(arrays[1])
    count = len(arrays[1])
    indices = tf.data.Dataset.range(count)
    if shuffle:
        indices = indices.shuffle(count, reshuffle_each_iteration=True)
    dataset = (indices.batch(batch_size)
               .map(lambda batch: (tf.gather(images, batch), tf.gather(labels, batch)),
                    num_parallel_calls=tf.data.AUTOTUNE)
               .repeat()
               .prefetch(tf.data.AUTOTUNE))
    return dataset.with_options(_NO_AUTOTUNE), math.ceil(count / batch_size)


# tf.data's autotuning thread sleeps ever longer between passes (the period doubles), and an
# iterator's destructor waits for it to wake: a fit of one iterator ended with the Trainer idle
# for 4-20 s, about as long as the fit itself, in one fit out of two or three. Nothing is left to
# tune in a gather from memory (benchmarks/fit_teardown_bench.py; docs/training.md, "The stall
# after the last epoch").
_NO_AUTOTUNE = tf.data.Options()
_NO_AUTOTUNE.autotune.enabled = False


def in_memory_fit_data(train: tuple[np.ndarray, np.ndarray],
                       evaluation: tuple[np.ndarray, np.ndarray],
                       batch_size: int) -> dict[str, Any]:
    """``fit`` arguments for splits held in memory (the Trainer's and the Tuner's trials).

    Keras fits numpy arrays through a dataset it iterates afresh every epoch, and every fresh
    iterator instantiates and optimises the dataset's functions again: in the pipeline's process,
    after Transform and StatisticsGen filled its function library, that took about 0.2 s per
    epoch and per split (docs/training.md, "One iterator for the whole fit"). Endless datasets
    with ``steps_per_epoch`` and ``validation_steps`` keep one iterator each for the whole fit;
    each epoch is still exactly one pass, reshuffled, with the last batch partial. As in Keras,
    what is shuffled is the indices, not the images (a shuffle buffer of images would hold a
    second copy of the split).
    """
    train_ds, train_steps = _repeated(train, batch_size, shuffle=True)
    eval_ds, eval_steps = _repeated(evaluation, max(batch_size, EVAL_BATCH), shuffle=False)
    return {"x": train_ds, "steps_per_epoch": train_steps,
            "validation_data": eval_ds, "validation_steps": eval_steps}


def _count_records(file_pattern: list[str]) -> int:
    """How many examples a streamed split holds (one pass over the files, nothing parsed)."""
    return int(_records(_files(file_pattern)).reduce(np.int64(0), lambda n, _: n + 1).numpy())


def _stream(file_pattern: list[str], data_accessor: Any, tf_transform_output: Any,
            batch_size: int, shuffle: bool) -> tf.data.Dataset:
    from tfx_bsl.public import tfxio

    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, num_epochs=1, shuffle=shuffle,
                                       label_key=features.LABEL_XF_KEY),
        tf_transform_output.transformed_metadata.schema,
    )
    return dataset.map(
        lambda f, y: (tf.reshape(f[features.IMAGE_XF_KEY], [-1, *features.IMAGE_SHAPE]),
                      tf.reshape(y, [-1]))
    ).prefetch(tf.data.AUTOTUNE)


def resolve_hparams(custom_config: dict[str, Any] | None, tuned: Any = None) -> HParams:
    """The run's hyperparameters: the pipeline's, overridden by the Tuner's best ones if any."""
    values = dict((custom_config or {}).get("hparams") or {})
    if tuned is not None:
        config = tuned.get_config() if hasattr(tuned, "get_config") else dict(tuned)
        values.update(config.get("values", config))
    return HParams.from_dict(values)


def warm_start_weights(model: tf.keras.Model, base_model_dir: str | None) -> str | None:
    """Load the previous model's Keras weights into ``model``; returns the weights path used."""
    if not base_model_dir:
        return None
    weights = os.path.join(os.path.dirname(base_model_dir.rstrip("/")), KERAS_WEIGHTS_RELPATH)
    if not tf.io.gfile.exists(weights):
        raise ValueError(
            f"--warm-start: the latest model at {base_model_dir} has no Keras weights "
            f"({weights}); run once without --warm-start to create one"
        )
    try:
        model.load_weights(weights)
    except ValueError as exc:  # shapes differ: the hyperparameters changed since that model
        raise ValueError(
            f"--warm-start: the weights in {weights} do not fit this architecture ({exc}); "
            "keep the same filters/hidden units as the previous run or drop --warm-start"
        ) from exc
    logging.info("Warm start from %s", weights)
    return weights


def plan_for(custom_config: dict[str, Any], hparams: HParams, train_examples: int,
             eval_examples: int, class_names: tuple[str, ...],
             sample_images: np.ndarray | None = None) -> TrainingBudget:
    """The run's budget from its data and the pipeline's settings (see modules/budget.py).

    ``sample_images``: training images whose profile (ink margin, fine detail) picks the
    augmentation and the input blur (the first 2,000 are measured).
    """
    minutes = custom_config.get("max_train_minutes", DEFAULT_MAX_TRAIN_MINUTES)
    profile = None if sample_images is None else measure(sample_images)
    return plan_budget(train_examples, hparams, eval_examples=eval_examples,
                       num_classes=len(class_names),
                       max_train_minutes=None if minutes is None else float(minutes),
                       profile=profile)


def _sample_images(file_pattern: list[str], tf_transform_output: Any) -> np.ndarray:
    """The first ``image_profile.SAMPLE`` transformed training images of a streamed split."""
    spec = {features.IMAGE_XF_KEY:
            tf_transform_output.transformed_feature_spec()[features.IMAGE_XF_KEY]}
    records = _records(_files(file_pattern)).take(SAMPLE).batch(SAMPLE)
    batch = tf.io.parse_example(next(iter(records)), spec)[features.IMAGE_XF_KEY]
    return batch.numpy().reshape([-1, *features.IMAGE_SHAPE])


def _stop_reason(early: tf.keras.callbacks.EarlyStopping, limit: Any, epochs_run: int,
                 planned: int) -> str:
    if limit.stopped_epoch is not None:
        return f"time limit: {limit.seconds / 60:g} min reached in epoch {limit.stopped_epoch + 1}"
    if early.stopped_epoch > 0:
        return f"early stopping: eval accuracy not better in {early.patience} epochs"
    return "end of the planned epochs"


def run_fn(fn_args: Any) -> None:
    """Train, evaluate on the eval split, export the SavedModel and the side outputs."""
    import tensorflow_transform as tft

    custom_config = fn_args.custom_config or {}
    hparams = resolve_hparams(custom_config, getattr(fn_args, "hyperparameters", None))
    class_names = tuple(custom_config.get("class_names") or features.DIGIT_CLASS_NAMES)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)

    limit = in_memory_limit(custom_config)
    train = load_arrays(fn_args.train_files, tf_transform_output, limit)
    evaluation = load_arrays(fn_args.eval_files, tf_transform_output,
                             limit) if train is not None else None
    in_memory = train is not None and evaluation is not None
    if train is not None and evaluation is not None:
        train_count, eval_count = len(train[1]), len(evaluation[1])
    else:
        train_count = _count_records(fn_args.train_files)
        eval_count = _count_records(fn_args.eval_files)
    sample = train[0] if train is not None else _sample_images(fn_args.train_files,
                                                                tf_transform_output)
    budget = plan_for(custom_config, hparams, train_count, eval_count, class_names, sample)
    hparams = budget.apply(hparams)
    logging.info("Training budget: %s", budget.reason)

    if train is not None and evaluation is not None:
        data = in_memory_fit_data(train, evaluation, hparams.batch_size)
    else:  # one pass of a stream of unknown length per epoch
        data = {"x": _stream(fn_args.train_files, fn_args.data_accessor, tf_transform_output,
                             hparams.batch_size, shuffle=True),
                "validation_data": _stream(fn_args.eval_files, fn_args.data_accessor,
                                           tf_transform_output, hparams.batch_size,
                                           shuffle=False)}
    # Known epoch lengths let Keras run several steps per call; a stream's cannot.
    model = build_model(hparams, num_classes=len(class_names),
                        steps_per_execution=execution_steps(data.get("steps_per_epoch") or 1))
    warm_from = warm_start_weights(model, getattr(fn_args, "base_model", None))
    early, time_limit = budget_callbacks(budget)
    callbacks = [tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch",
                                                profile_batch=0), *schedule_callbacks(hparams),
                 early, time_limit]
    if os.environ.get(PROGRESS_ENV):  # the runner shows the epochs (pipeline/progress.py)
        callbacks.append(ProgressFile(os.environ[PROGRESS_ENV], budget.epochs,
                                      budget.max_train_minutes))
    started = time.monotonic()
    history = model.fit(**data, epochs=hparams.epochs, callbacks=callbacks, verbose=2)
    train_seconds = time.monotonic() - started

    # Mixed precision trains in bfloat16; what is served (and evaluated by TFMA) is float32.
    served = float32_twin(model, hparams, len(class_names))
    export_serving_model(served, fn_args.serving_model_dir, tf_transform_output, class_names)
    model_dir = os.path.dirname(fn_args.serving_model_dir.rstrip("/"))
    weights_path = os.path.join(model_dir, KERAS_WEIGHTS_RELPATH)
    tf.io.gfile.makedirs(os.path.dirname(weights_path))
    model.save_weights(weights_path)

    epochs = [
        {name: float(values[i]) for name, values in history.history.items()}
        for i in range(len(next(iter(history.history.values()), [])))
    ]
    outcome = {
        "epochs_run": len(epochs),
        "best_epoch": int(early.best_epoch) + 1 if epochs else 0,  # 1-based, weights restored
        "stopped_by": _stop_reason(early, time_limit, len(epochs), budget.epochs),
        "steps_run": _steps_run(epochs, budget),
        "in_memory": in_memory,
    }
    summary = {
        "hparams": hparams.to_dict(),
        "budget": {**budget.to_dict(), **outcome},
        "class_names": list(class_names),
        "model_name": custom_config.get("model_name", ""),
        "train_examples": train_count,
        "eval_examples": eval_count,
        "train_seconds": train_seconds,
        "history": epochs,
        "tensorboard_dir": fn_args.model_run_dir,
        "warm_start_from": warm_from or "",
    }
    with tf.io.gfile.GFile(os.path.join(model_dir, TRAINING_SUMMARY_FILE), "w") as handle:
        handle.write(json.dumps(summary, indent=2))


def _steps_run(epochs: list[dict[str, float]], budget: TrainingBudget) -> int:
    """Optimizer steps taken (a time-limited last epoch is counted whole: an upper bound)."""
    return len(epochs) * budget.steps_per_epoch
