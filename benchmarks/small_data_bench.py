"""Small-data benchmark: the pipeline with default flags vs a plain Keras script, 1,000 images.

What a new user does: 1,000 Fashion-MNIST training images, 100 per class (fixed seed), written
as a flat ``<class>/<n>.png`` folder, then ``python -m pipeline.local_runner --data DIR`` with
default flags (its own 80/20 split). In the same run, a 40-line plain Keras script (a similar CNN,
random rotation/shift/zoom, Adam 1e-3, batch 32, 60 epochs) trains on the same 1,000 images.
Both models are scored on Fashion-MNIST's full 10,000-image test set.

Needs Debian's ``dataset-fashion-mnist``. Usage::

    python benchmarks/small_data_bench.py [--repeats 1] [--per-class 100] [--seed 0]

Prints a table (medians over repeats) and writes ``benchmarks/out/small_data_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine  # noqa: E402
from contracts.runtime import configure_tensorflow  # noqa: E402

configure_tensorflow()

FASHION = Path("/usr/share/datasets/fashion-mnist")
OUT = Path(__file__).resolve().parent / "out"


def read_idx(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) from a gzipped IDX pair (no project code)."""
    import gzip

    with gzip.open(images) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(labels) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return x, y


def sample_folder(dest: Path, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Write ``per_class`` random training images of each class as ``dest/<class>/<n>.png``."""
    from PIL import Image

    x, y = read_idx(FASHION / "train-images-idx3-ubyte.gz", FASHION / "train-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(seed)
    picked = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False)
                             for c in range(10)])
    for n, i in enumerate(picked):
        folder = dest / str(int(y[i]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i], mode="L").save(folder / f"{n}.png")
    return x[picked], y[picked]


def test_set() -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(FASHION / "t10k-images-idx3-ubyte.gz", FASHION / "t10k-labels-idx1-ubyte.gz")
    return (x[..., None] / 255.0).astype(np.float32), y


KERAS_SCRIPT = r'''
import json, sys, time
import numpy as np
import tensorflow as tf
data = np.load(sys.argv[1])
x = (data["x"][..., None] / 255.0).astype(np.float32)
xt = (data["xt"] / 1.0).astype(np.float32)
k = tf.keras
tf.keras.utils.set_random_seed(int(sys.argv[2]))
model = k.Sequential([
    k.Input((28, 28, 1)),
    k.layers.RandomRotation(0.05), k.layers.RandomTranslation(0.1, 0.1), k.layers.RandomZoom(0.1),
    k.layers.Conv2D(32, 3, activation="relu"), k.layers.MaxPooling2D(),
    k.layers.Conv2D(64, 3, activation="relu"), k.layers.MaxPooling2D(),
    k.layers.Flatten(), k.layers.Dropout(0.5), k.layers.Dense(128, activation="relu"),
    k.layers.Dense(10, activation="softmax"),
])
model.compile(k.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
started = time.monotonic()
model.fit(x, data["y"], batch_size=32, epochs=60, verbose=0)
seconds = time.monotonic() - started
accuracy = model.evaluate(xt, data["yt"], verbose=0)[1]
print(json.dumps({"accuracy": float(accuracy), "train_seconds": seconds}))
'''


def keras_script(x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray, tmp: Path,
                 seed: int) -> dict[str, float]:
    """The plain Keras recipe, in its own process (its own TensorFlow state and threads)."""
    arrays = tmp / "arrays.npz"
    np.savez(arrays, x=x, y=y, xt=xt, yt=yt)
    script = tmp / "keras_script.py"
    script.write_text(KERAS_SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, str(script), str(arrays), str(seed)], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_pipeline(data: Path, tmp: Path) -> dict[str, object]:
    """``python -m pipeline.local_runner --data DATA`` with default flags, timed as a user sees it."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [sys.executable, "-m", "pipeline.local_runner", "--data", str(data),
            "--model-name", "small", "--pipeline-root", str(tmp / "root"),
            "--metadata", str(tmp / "metadata.sqlite"), "--serving-dir",
            str(tmp / "serving"), "--log-dir", str(tmp / "logs")]
    started = time.monotonic()
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"pipeline failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return {"seconds": seconds, "output": done.stdout}


def pipeline_result(tmp: Path) -> dict[str, object]:
    """Blessing, eval accuracy, the budget and the trained SavedModel's path, from MLMD."""
    from ml_metadata.metadata_store import metadata_store

    from metastore.metadata_config import connection_config
    from pipeline.run_summary import summarize_run

    store = metadata_store.MetadataStore(connection_config(str(tmp / "metadata.sqlite")))
    summary = summarize_run(store, "small")
    if summary is None or not summary.model_uri:
        raise SystemExit("the pipeline left no trained model in MLMD")
    return {"blessed": summary.blessed, "eval_accuracy": summary.accuracy,
            "pushed_version": summary.pushed_version, "training": summary.training,
            "saved_model": os.path.join(summary.model_uri, "Format-Serving")}


def score(saved_model: str, xt: np.ndarray, yt: np.ndarray) -> float:
    import tensorflow as tf

    predict = tf.saved_model.load(saved_model).signatures["serving_default"]
    predictions = []
    for start in range(0, len(xt), 1000):
        out = predict(images=tf.constant(xt[start:start + 1000]))
        predictions.append(np.argmax(next(iter(out.values())).numpy(), axis=1))
    return float(np.mean(np.concatenate(predictions) == yt))


def one_repeat(per_class: int, seed: int) -> dict[str, object]:
    xt, yt = test_set()
    with tempfile.TemporaryDirectory(prefix="small-data-") as name:
        tmp = Path(name)
        x, y = sample_folder(tmp / "images", per_class, seed)
        run = run_pipeline(tmp / "images", tmp)
        result = pipeline_result(tmp)
        result["test_accuracy"] = score(str(result.pop("saved_model")), xt, yt)
        result["end_to_end_s"] = run["seconds"]
        keras = keras_script(x, y, xt, yt, tmp, seed)
    return {"pipeline": result, "keras": keras, "output": run["output"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not FASHION.is_dir():
        raise SystemExit("needs Fashion-MNIST: apt-get install dataset-fashion-mnist")
    runs = []
    for repeat in range(args.repeats):
        runs.append(one_repeat(args.per_class, args.seed + repeat))
        print(runs[-1]["output"], file=sys.stderr)
    pipe_acc = statistics.median(r["pipeline"]["test_accuracy"] for r in runs)
    keras_acc = statistics.median(r["keras"]["accuracy"] for r in runs)
    pipe_s = statistics.median(r["pipeline"]["end_to_end_s"] for r in runs)
    keras_s = statistics.median(r["keras"]["train_seconds"] for r in runs)
    print(f"machine: {machine()}")
    print(f"{10 * args.per_class} Fashion-MNIST images ({args.per_class} per class), "
          f"{args.repeats} repeat(s), medians; test set: 10,000 images")
    rows = [
        ("pipeline test accuracy", f"{pipe_acc:.4f}"),
        ("plain Keras test accuracy", f"{keras_acc:.4f}"),
        ("pipeline - Keras", f"{100 * (pipe_acc - keras_acc):+.1f} points"),
        ("pipeline eval accuracy (TFMA)",
         ", ".join(f"{r['pipeline']['eval_accuracy']:.4f}" for r in runs)),
        ("blessed (default flags)", ", ".join(str(r["pipeline"]["blessed"]) for r in runs)),
        ("pipeline end to end", f"{pipe_s:.1f} s"),
        ("plain Keras training", f"{keras_s:.1f} s"),
        ("pipeline - Keras time", f"{pipe_s - keras_s:+.1f} s"),
        ("budget", runs[0]["pipeline"]["training"].get("reason", "-")),
        ("stopped by", runs[0]["pipeline"]["training"].get("stopped_by", "-")),
    ]
    for label, value in rows:
        print(f"{label:32}{value}")
    OUT.mkdir(exist_ok=True)
    for r in runs:
        r.pop("output")
    (OUT / "small_data_bench.json").write_text(json.dumps(
        {"machine": machine(), "per_class": args.per_class, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
