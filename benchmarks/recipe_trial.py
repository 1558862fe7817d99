"""In-process trials of the training recipe behind docs/training.md's tables, reproducible.

    python benchmarks/recipe_trial.py --mnist-test DIR
        [--dataset digits|handwriting|fashion|fashion-1k]
        [--augmentations default,no-slant,keras-chain] [--min-steps 2000] [--fractions 0.5]
        [--label-smoothings budget,0,0.1] [--precisions budget,float32,mixed_bfloat16]
        [--filters 32/64,16/32] [--epochs budget,10] [--last-batches partial,full]
        [--split random|hash] [--seeds 0,1,2] [--mnist-records FILE]

Trains ``build_model`` in-process with the budget's recipe (what the Trainer would plan for the
same images) on an 80/20 split drawn by the seed, once per augmentation, training-blur fraction,
label smoothing, precision, width, epoch count, last-batch handling and seed, and scores each
model (the float32 copy the Trainer exports) on MNIST's 10,000 test digits
(``t10k-*-ubyte.gz`` in ``--mnist-test``, env ``MNIST_TEST_DIR``; not part of this repository),
or Fashion-MNIST's. The fit is fed by the Trainer's own ``in_memory_fit_data`` since 2026-12-04
16:00; the tables measured before used Keras' numpy fit (the same batches, one exact pass per
epoch, but other random draws: a seed no longer reproduces those figures exactly).

* ``--dataset digits``: the embedded scikit-learn digits, upscaled as ``make run`` writes them.
  ``handwriting``: TFX's 1,000 MNIST example records (``--mnist-records``, env
  ``MNIST_TFX_RECORDS``: ``tfx/examples/mnist/data/mnist.tfrecord`` of tensorflow/tfx).
  ``fashion``: all 60,000 Fashion-MNIST training images, scored on its 10,000 test images
  (Debian's ``dataset-fashion-mnist``; ``--mnist-test`` is not needed). About 1.5 min a fit here.
  ``fashion-1k``: 100 of them per class (``small_data_bench.py``'s sample, seed 0), the same test.
* ``--augmentations``: ``default`` (the "affine" policy as shipped: rotation, zoom, a slant of
  +-0.3 and shifts in one resampling), ``no-slant`` (the same without the shear), ``slant-0.5``
  (a shear of +-0.5), ``keras-chain`` (Keras' RandomRotation, RandomZoom and RandomTranslation
  in a row, three resamplings: the policy before ``RandomAffine``).
* ``--min-steps``: the budget's step floor (``modules.budget.MIN_STEPS``), comma-separated.
* ``--fractions``: the blur while training as a share of the served one (only for images the
  budget blurs, the smooth embedded digits): 1 the recipe before, 0 none, 0.5 the default.
* ``--label-smoothings``, ``--precisions``: ``budget`` (the budget's choice) or a value, as the
  Trainer's ``--label-smoothing`` and ``--precision``.
* ``--filters``: the two conv blocks' filters, ``A/B`` (``--filters A B``).
* ``--epochs``: ``budget`` (its choice) or a count, as the Trainer's ``--epochs``.
* ``--last-batches``: ``partial`` feeds the fit as the Trainer does (``in_memory_fit_data``: one
  exact reshuffled pass per epoch, the last batch partial: 3 of 32 images on TFX's records);
  ``full`` runs the batches on across the passes, so every batch is full (tried 2026-12-04, not
  kept: docs/training.md).
* ``--split``: ``random`` (an 80/20 split drawn by the seed) or, for ``handwriting``, ``hash``:
  ExampleGen's own split of the records (803 training, 197 eval), as the pipeline trains.

Prints one JSON line per run and the mean per trial.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.small_data_bench import (  # noqa: E402
    FASHION_TEST_FILES,
    FASHION_TRAIN_FILES,
    MNIST_TEST_FILES,
    per_class_sample,
    read_fashion,
    read_idx,
    read_tfx_records,
    scaled,
)

AUGMENTATIONS = ("default", "no-slant", "slant-0.5", "keras-chain")
DATASETS = ("digits", "handwriting", "fashion", "fashion-1k")
FASHION_DATASETS = ("fashion", "fashion-1k")


def augmentation(name: str) -> list[Any]:
    """The training-time layers of the ``name`` trial (for the "affine" policy)."""
    import tensorflow as tf

    from modules import augmentation as aug

    if name == "default":
        return aug.augmentation_layers("affine")
    if name in ("no-slant", "slant-0.5"):
        shear = 0.0 if name == "no-slant" else 0.5
        return [aug.RandomAffine(aug.AFFINE_ROTATION, aug.AFFINE_ZOOM, aug.AFFINE_SHIFT, shear,
                                 name="aug_affine")]
    if name == "keras-chain":
        layers = tf.keras.layers
        return [layers.RandomRotation(aug.AFFINE_ROTATION, fill_mode="constant"),
                layers.RandomZoom(aug.AFFINE_ZOOM, fill_mode="constant"),
                layers.RandomTranslation(aug.AFFINE_SHIFT, aug.AFFINE_SHIFT,
                                         fill_mode="constant")]
    raise SystemExit(f"unknown augmentation {name!r}: use one of {', '.join(AUGMENTATIONS)}")


def load(dataset: str, records: Path | None) -> tuple[Any, Any]:
    """Training images [N, 28, 28, 1] in [0, 1] and labels."""

    if dataset == "digits":
        from pipeline.datasets import embedded_digits

        x, y = embedded_digits()
        return scaled(x), y
    if dataset in FASHION_DATASETS:
        x, y = read_fashion(FASHION_TRAIN_FILES)
        if dataset == "fashion-1k":
            picked = per_class_sample(y, 100, 0)
            x, y = x[picked], y[picked]
        return scaled(x), y
    if records is None or not records.is_file():
        raise SystemExit("--dataset handwriting needs TFX's mnist.tfrecord in --mnist-records "
                         "(or MNIST_TFX_RECORDS)")
    x, y = read_tfx_records(records)
    return scaled(x), y


def scoring_set(dataset: str, mnist_test: Path | None) -> tuple[Any, Any]:
    """The scoring images [N, 28, 28, 1] in [0, 1] and labels: Fashion-MNIST's test images for
    its datasets, else MNIST's test digits from ``mnist_test``."""
    if dataset in FASHION_DATASETS:
        xt, yt = read_fashion(FASHION_TEST_FILES)
        return scaled(xt), yt
    if mnist_test is None or not all((mnist_test / f).is_file() for f in MNIST_TEST_FILES):
        raise SystemExit("needs MNIST's t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
                         "in --mnist-test (or MNIST_TEST_DIR)")
    xt, yt = read_idx(*(mnist_test / f for f in MNIST_TEST_FILES))
    return scaled(xt), yt


def hash_split(records: Path) -> tuple[list[int], list[int]]:
    """ExampleGen's split of a TFRecord file, by the pipeline's own reader: the train and eval
    indices of its records."""
    from datasources.readers import iter_tfrecord

    def indices(split: str) -> list[int]:  # sources are "<file name>#<record index>"
        return [int(source.rsplit("#", 1)[1])
                for source, _, _ in iter_tfrecord(records, 10, split=split)]

    return indices("train"), indices("eval")


def full_batches(x: Any, y: Any, batch_size: int) -> Any:
    """The training split as the Trainer feeds it, but with the batches running on across the
    reshuffled passes (``repeat`` before ``batch``), so none is partial."""
    import tensorflow as tf

    images, labels = tf.constant(x), tf.constant(y)
    indices = tf.data.Dataset.range(len(y)).shuffle(len(y), reshuffle_each_iteration=True)
    return (indices.repeat().batch(batch_size)
            .map(lambda batch: (tf.gather(images, batch), tf.gather(labels, batch)))
            .prefetch(tf.data.AUTOTUNE))


def one_run(data: tuple[Any, Any], policy: str, min_steps: int, fraction: float,
            chosen: dict[str, Any], last_batch: str, split: tuple[list[int], list[int]] | None,
            seed: int, xt: Any, yt: Any) -> dict[str, object]:
    """One fit; ``chosen`` sets HParams fields (None: the budget's choice); ``split``: train and
    eval indices (None: an 80/20 split drawn by the seed)."""
    import numpy as np
    import tensorflow as tf

    import modules.budget as budget_module
    import modules.model as model_module
    from modules.hparams import HParams
    from modules.image_profile import measure
    from modules.trainer import in_memory_fit_data

    tf.keras.utils.set_random_seed(seed)
    model_module.TRAIN_BLUR_FRACTION = fraction  # read by InputBlur when the model is built
    x, y = data
    if split is not None:
        train, held = (np.asarray(part) for part in split)
    else:
        order = np.random.default_rng(seed).permutation(len(x))
        cut = int(len(x) * 0.8)
        train, held = order[:cut], order[cut:]
    budget_module.MIN_STEPS = min_steps  # read when the budget is planned
    base = HParams(**chosen)
    budget = budget_module.plan_budget(len(train), base, eval_examples=len(held),
                                       profile=measure(x[train[:2000]]))
    hp = budget.apply(base)
    shipped = model_module.augmentation_layers
    if hp.augmentation == "affine":  # the trial replaces the affine policy's layers only
        model_module.augmentation_layers = lambda _policy: augmentation(policy)
    try:
        model = model_module.build_model(
            hp, steps_per_execution=model_module.execution_steps(budget.steps_per_epoch))
    finally:
        model_module.augmentation_layers = shipped
    early, _ = model_module.budget_callbacks(budget)
    started = time.monotonic()
    fit_data = in_memory_fit_data((x[train], y[train]), (x[held], y[held]), hp.batch_size)
    if last_batch == "full":
        fit_data["x"] = full_batches(x[train], y[train], hp.batch_size)
    history = model.fit(**fit_data, epochs=hp.epochs, verbose=0,
                        callbacks=[*model_module.schedule_callbacks(hp), early])
    fit_s = time.monotonic() - started
    served = model_module.float32_twin(model, hp, model.output_shape[-1])  # what is exported
    return {"augmentation": policy if hp.augmentation == "affine" else hp.augmentation,
            "min_steps": min_steps, "fraction": fraction, "label_smoothing": hp.label_smoothing,
            "precision": hp.precision, "filters": f"{hp.filters_1}/{hp.filters_2}",
            "epochs": hp.epochs,
            "last_batch": last_batch, "split": "random" if split is None else "hash",
            "seed": seed,
            "test": round(float(served.evaluate(xt, yt, verbose=0, batch_size=512)[1]), 4),
            "eval": round(float(served.evaluate(x[held], y[held], verbose=0, batch_size=512)[1]), 4),
            "epochs_run": len(history.history["loss"]), "kept_epoch": early.best_epoch + 1,
            "fit_s": round(fit_s, 1)}


def listed(text: str, convert: Callable[[str], Any] = str) -> list[Any]:
    """A sweep flag's comma-separated values; ``budget`` (the budget's choice) is None."""
    return [None if value == "budget" else convert(value) for value in text.split(",")]


def chosen_hparams(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The HParams fields each trial sets, from the comma-separated flags (budget: None)."""
    widths = listed(args.filters, lambda pair: tuple(int(f) for f in pair.split("/")))
    return [{"label_smoothing": smoothing, "precision": precision, "filters_1": width[0],
             "filters_2": width[1], "epochs": count}
            for smoothing, precision, width, count
            in itertools.product(listed(args.label_smoothings, float), listed(args.precisions),
                                 widths, listed(args.epochs, int))]


def checked(values: list[str], allowed: tuple[str, ...], flag: str) -> list[str]:
    unknown = [value for value in values if value not in allowed]
    if unknown:
        raise SystemExit(f"unknown {flag} value {unknown[0]!r}: use one of {', '.join(allowed)}")
    return values


# The sweep flags: each comma-separated value is one trial ("budget": the budget's choice).
SWEEPS = (
    ("--augmentations", "default", f"one or more of {', '.join(AUGMENTATIONS)}"),
    ("--min-steps", "2000", "the budget's step floor"),
    ("--fractions", "0.5", "training blur as a share of the served one"),
    ("--label-smoothings", "budget", "'budget' (its choice) or a value"),
    ("--precisions", "budget", "'budget' (its choice), float32 or mixed_bfloat16"),
    ("--filters", "32/64", "the two conv blocks' filters as A/B"),
    ("--epochs", "budget", "'budget' (its choice) or a count"),
    ("--last-batches", "partial", "partial (the Trainer's batches) or full (none partial)"),
    ("--seeds", "0,1,2", "seeds"),
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]))
    env_dir = os.environ.get("MNIST_TEST_DIR")
    env_records = os.environ.get("MNIST_TFX_RECORDS")
    parser.add_argument("--mnist-test", type=Path, default=Path(env_dir) if env_dir else None,
                        help="folder with MNIST's t10k-*-ubyte.gz (env MNIST_TEST_DIR)")
    parser.add_argument("--dataset", choices=DATASETS, default="digits")
    parser.add_argument("--mnist-records", type=Path,
                        default=Path(env_records) if env_records else None,
                        help="TFX's mnist.tfrecord for --dataset handwriting "
                             "(env MNIST_TFX_RECORDS)")
    for flag, default, what in SWEEPS:
        parser.add_argument(flag, default=default, help=f"{what} (comma-separated)")
    parser.add_argument("--split", choices=("random", "hash"), default="random",
                        help="random (drawn by the seed) or hash (ExampleGen's, handwriting only)")
    args = parser.parse_args(argv)
    if args.split == "hash" and args.dataset != "handwriting":
        raise SystemExit("--split hash needs --dataset handwriting (its records' ExampleGen keys)")
    last_batches = checked(listed(args.last_batches), ("partial", "full"), "--last-batches")
    policies = checked(listed(args.augmentations), AUGMENTATIONS, "--augmentations")
    xt, yt = scoring_set(args.dataset, args.mnist_test)
    chosen = chosen_hparams(args)
    data = load(args.dataset, args.mnist_records)
    split = hash_split(args.mnist_records) if args.split == "hash" else None
    results: dict[str, list[float]] = {}
    trials = itertools.product(policies, (int(m) for m in args.min_steps.split(",")),
                               (float(f) for f in args.fractions.split(",")), chosen,
                               last_batches)
    for policy, min_steps, fraction, fields, last_batch in trials:
        for seed in (int(s) for s in args.seeds.split(",")):
            run = one_run(data, policy, min_steps, fraction, fields, last_batch, split, seed,
                          xt, yt)
            print(json.dumps(run), flush=True)
            trial = (f"{args.dataset}, augmentation {run['augmentation']}, {min_steps}-step "
                     f"floor, training blur {fraction:g} x the served one, label smoothing "
                     f"{run['label_smoothing']:g}, {run['precision']}, filters {run['filters']}, "
                     f"{run['epochs']} epochs, "
                     f"{last_batch} last batch, {args.split} split")
            results.setdefault(trial, []).append(float(run["test"]))
    for trial, scores in results.items():
        print(f"{trial}: test {', '.join(f'{s:.4f}' for s in scores)}; "
              f"mean {statistics.mean(scores):.4f}")


if __name__ == "__main__":
    main()
