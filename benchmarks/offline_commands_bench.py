"""`mlmodel predict` and `mlmodel eval` end to end vs a minimal script, same run.

    python benchmarks/offline_commands_bench.py [--repeats 3] [--data DIR]

Data: Fashion-MNIST's 10,000-image IDX test set (Debian's ``dataset-fashion-mnist``; only its
``t10k-*`` files, linked into a folder of their own). Model: the pipeline's CNN exported as the
pipeline exports it (untrained: time does not depend on the weights), registered as a pipeline
model in a throw-away registry.

* baseline: ``python -c`` a minimal script that imports TensorFlow, loads the same SavedModel,
  reads the same IDX arrays with numpy and predicts them in batches of 1,000 through
  ``serving_default`` (imports included: a whole process, like the commands);
* ``mlmodel predict fashion DATA --output csv --out FILE`` (Beam RunInference, DirectRunner);
* ``mlmodel eval fashion DATA`` (the same, plus 3 repetitions and the MLMD record).

Targets (issue 14): predict <= 1.5x the script, eval <= 2x. Medians of ``--repeats``; the three
take turns so that machine noise falls on all of them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FASHION = "/usr/share/datasets/fashion-mnist"
SCRIPT = """
import gzip, sys, numpy as np
from contracts.runtime import configure_tensorflow
configure_tensorflow()
import tensorflow as tf
def idx(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)
images = idx(sys.argv[2] + "/t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1)
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
out = [serve(images=tf.constant(images[i:i + 1000].astype(np.float32) / 255.0))["probabilities"]
       .numpy() for i in range(0, len(images), 1000)]
print(np.concatenate(out).shape)
"""


def setup(root: Path, fashion: str) -> tuple[dict[str, str], str, str]:
    from benchmarks.serving_bench import build_model
    from benchmarks.tfx_records import add_pipeline_run

    model = root / "model"
    build_model(model)
    metadata = str(root / "metadata.sqlite")
    add_pipeline_run(metadata, "fashion", str(model), str(root / "pushed"))
    data = root / "t10k"
    data.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        os.symlink(os.path.join(fashion, name), data / name)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3",
               MNIST_TFX_METADATA=metadata, MNIST_TFX_SERVING_DIR=str(root / "serving"))
    return env, str(root / "pushed" / "fashion" / "1"), str(data)


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default=FASHION, help="Folder with the t10k IDX files.")
    args = parser.parse_args()
    if not os.path.exists(os.path.join(args.data, "t10k-images-idx3-ubyte.gz")):
        raise SystemExit(f"{args.data}: no t10k IDX files (apt-get install dataset-fashion-mnist)")
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="offline-bench-") as tmp:
        env, model_dir, data = setup(Path(tmp), args.data)
        out = str(Path(tmp) / "predictions.csv")
        cases = {
            "minimal script (load + predict, batches of 1,000)": [py, "-c", SCRIPT, model_dir, data],
            "mlmodel predict --output csv --out FILE": [py, "-m", "registry", "predict", "fashion",
                                                        data, "--output", "csv", "--out", out],
            "mlmodel eval (3 x 80%, recorded)": [py, "-m", "registry", "eval", "fashion", data],
        }
        times: dict[str, list[float]] = {label: [] for label in cases}
        for _ in range(args.repeats):
            for label, argv in cases.items():
                times[label].append(timed(argv, env))
        rows = Path(out).read_text(encoding="utf-8").count("\n") - 1
    base = statistics.median(next(iter(times.values())))
    print(f"\noffline commands on {rows:,} Fashion-MNIST test images, median of {args.repeats}")
    print(f"{'run':<52}{'median s':>10}{'vs script':>11}{'target':>9}")
    targets = ["", "<= 1.5x", "<= 2x"]
    for (label, values), target in zip(times.items(), targets, strict=True):
        med = statistics.median(values)
        print(f"{label:<52}{med:>10.2f}{med / base:>10.2f}x{target:>9}")
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
