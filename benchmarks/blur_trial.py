"""The input-blur trial behind ``TRAIN_BLUR_FRACTION`` (docs/training.md), reproducible.

    python benchmarks/blur_trial.py --mnist-test DIR [--fractions 1,0,0.5] [--seeds 0,1,2]

Trains ``build_model`` in-process with the budget's recipe on the embedded scikit-learn digits
(upscaled as ``make run`` writes them; an 80/20 split drawn by the seed), once per training-blur
fraction and seed, and scores each model on MNIST's 10,000 test digits (``t10k-*-ubyte.gz`` in
``--mnist-test``, env ``MNIST_TEST_DIR``; not part of this repository). The fraction is the
blur while training as a share of the served one (1 px for these smooth scans): 1 is the recipe
before, 0 no blur while training, 0.5 the default. Prints one line per run and the mean per
fraction.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.small_data_bench import MNIST_TEST_FILES, read_idx  # noqa: E402


def one_run(fraction: float, seed: int, xt, yt) -> dict[str, object]:  # noqa: ANN001 - arrays
    import numpy as np
    import tensorflow as tf
    from sklearn.datasets import load_digits

    import modules.model as model_module
    from modules.budget import plan_budget
    from modules.hparams import HParams
    from modules.image_profile import measure
    from pipeline.datasets import upscale_digit

    tf.keras.utils.set_random_seed(seed)
    model_module.TRAIN_BLUR_FRACTION = fraction  # read by InputBlur when the model is built
    digits = load_digits()
    x = np.stack([upscale_digit(i) for i in digits.images]).astype(np.float32)[..., None] / 255
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(len(x) * 0.8)
    train, held = order[:cut], order[cut:]
    budget = plan_budget(len(train), HParams(), eval_examples=len(held),
                         profile=measure(x[train]))
    hp = budget.apply(HParams())
    model = model_module.build_model(hp)
    early, _ = model_module.budget_callbacks(budget)
    started = time.monotonic()
    history = model.fit(x[train], y[train], batch_size=hp.batch_size, epochs=hp.epochs,
                        validation_data=(x[held], y[held]), verbose=0,
                        callbacks=[*model_module.schedule_callbacks(hp), early])
    return {"fraction": fraction, "seed": seed,
            "mnist_test": round(float(model.evaluate(xt, yt, verbose=0, batch_size=512)[1]), 4),
            "eval": round(float(model.evaluate(x[held], y[held], verbose=0)[1]), 4),
            "epochs_run": len(history.history["loss"]), "kept_epoch": early.best_epoch + 1,
            "fit_s": round(time.monotonic() - started, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    env_dir = os.environ.get("MNIST_TEST_DIR")
    parser.add_argument("--mnist-test", type=Path, default=Path(env_dir) if env_dir else None,
                        help="folder with MNIST's t10k-*-ubyte.gz (env MNIST_TEST_DIR)")
    parser.add_argument("--fractions", default="1,0,0.5")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args(argv)
    if args.mnist_test is None or not all((args.mnist_test / f).is_file()
                                          for f in MNIST_TEST_FILES):
        raise SystemExit("needs MNIST's t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
                         "in --mnist-test (or MNIST_TEST_DIR)")
    xt, yt = read_idx(*(args.mnist_test / f for f in MNIST_TEST_FILES))
    xt = xt[..., None].astype("float32") / 255
    results: dict[float, list[float]] = {}
    for fraction in (float(f) for f in args.fractions.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            run = one_run(fraction, seed, xt, yt)
            print(json.dumps(run), flush=True)
            results.setdefault(fraction, []).append(float(run["mnist_test"]))
    for fraction, scores in results.items():
        print(f"training blur {fraction:g} x the served one: MNIST test "
              f"{', '.join(f'{s:.3f}' for s in scores)}; mean {statistics.mean(scores):.3f}")


if __name__ == "__main__":
    main()
