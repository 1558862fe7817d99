"""How long ``fit`` takes to return after its last epoch, with tf.data autotuning on and off.

The Trainer fits in-memory splits through one endless dataset for the whole fit
(``modules.trainer.in_memory_fit_data``). With tf.data's autotuning on, the iterator's destructor
waits for the autotuning thread, whose sleep doubles while the fit runs: in some fits the Trainer
sat idle after its last epoch for about as long as the fit had run (4-20 s). This bench fits the
Trainer's model and datasets (random 28x28 images, the handwriting bench's sizes) ``--repeats``
times each way, alternating, and reports per mode the median and the worst wait between Keras'
``on_train_end`` and ``fit`` returning, and the median fit.

    python benchmarks/fit_teardown_bench.py [--repeats 4] [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contracts.runtime import configure_tensorflow  # noqa: E402

configure_tensorflow()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from modules import trainer  # noqa: E402
from modules.budget import plan_budget  # noqa: E402
from modules.hparams import HParams  # noqa: E402
from modules.image_profile import measure  # noqa: E402
from modules.model import build_model, execution_steps  # noqa: E402

TRAIN, EVAL = 800, 200  # TFX's 1,000 MNIST records, split as the pipeline splits them


class _EndTime(tf.keras.callbacks.Callback):
    ended = 0.0

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        self.ended = time.monotonic()


def one_fit(autotune: bool, epochs: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    x = rng.random((TRAIN, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, TRAIN)
    xe = rng.random((EVAL, 28, 28, 1), dtype=np.float32)
    ye = rng.integers(0, 10, EVAL)
    budget = plan_budget(TRAIN, HParams(), eval_examples=EVAL, profile=measure(x))
    hp = budget.apply(HParams())
    fit = trainer.in_memory_fit_data((x, y), (xe, ye), hp.batch_size)
    if autotune:  # what tf.data does by default
        options = tf.data.Options()
        options.autotune.enabled = True
        fit["x"] = fit["x"].with_options(options)
        fit["validation_data"] = fit["validation_data"].with_options(options)
    model = build_model(hp, steps_per_execution=execution_steps(fit["steps_per_epoch"]))
    end = _EndTime()
    started = time.monotonic()
    model.fit(epochs=epochs, verbose=0, callbacks=[end], **fit)
    returned = time.monotonic()
    return {"fit_s": returned - started, "after_last_epoch_s": returned - end.ended}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=4, help="fits per mode (default 4)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per fit (default 20)")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"autotune on": [], "autotune off (ours)": []}
    for repeat in range(args.repeats):
        for mode in runs:
            runs[mode].append(one_fit(mode == "autotune on", args.epochs, repeat))
            print(f"{mode:20s} repeat {repeat + 1}: "
                  f"{runs[mode][-1]['after_last_epoch_s']:.2f} s after the last epoch", flush=True)
    report = {}
    for mode, fits in runs.items():
        waits = [f["after_last_epoch_s"] for f in fits]
        report[mode] = {"median_wait_s": statistics.median(waits), "worst_wait_s": max(waits),
                        "median_fit_s": statistics.median(f["fit_s"] for f in fits),
                        "fits": fits}
        print(f"{mode:20s} wait after the last epoch: median {statistics.median(waits):.2f} s, "
              f"worst {max(waits):.2f} s; fit median {report[mode]['median_fit_s']:.1f} s")
    out = ROOT / "benchmarks" / "out" / "fit_teardown_bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"epochs": args.epochs, "repeats": args.repeats, **report}, indent=1))
    tmp.replace(out)


if __name__ == "__main__":
    main()
