"""Small-data benchmark: the pipeline with default flags vs a plain Keras script and TFX's example.

What a new user does, on kinds of small (and one larger) data, each scored on a test set not used
in training:

* ``fashion``: 1,000 Fashion-MNIST training images, 100 per class (fixed seed), written as a flat
  ``<class>/<n>.png`` folder; Fashion-MNIST's 10,000 test images. Needs Debian's
  ``dataset-fashion-mnist``.
* ``handwriting``: TFX's own MNIST example data, the 1,000 records of
  ``tfx/examples/mnist/data/mnist.tfrecord`` (tensorflow/tfx), given to ``--data`` as TFRecord
  input exactly as TFX ships them; MNIST's 10,000 test digits (``t10k-*-idx*-ubyte.gz``).
* ``default``: the model ``make run`` trains (the embedded scikit-learn digits, default flags),
  scored on the same real handwritten test digits (and on TFX's 1,000 records).
* ``fashion-full``: all 60,000 Fashion-MNIST training images, written once as one TFRecord file
  in the format of TFX's MNIST example (``image_floats`` = pixel/255 - 0.5, ``image_class``) and
  given to both our pipeline and TFX's example; Fashion-MNIST's 10,000 test images. About ten
  minutes on two cores, so it runs only when named in ``--datasets``; no plain Keras script.

TFX's own MNIST example pipeline (``tfx.examples.mnist.mnist_pipeline_native_keras`` as TFX 1.16
installs it, run by ``benchmarks/tfx_example.py`` in its own process, timed from its start to its
exit) runs on the same records for ``handwriting`` and ``fashion-full``, after ours, and its
trained model is scored on the same test set: the report gives ours/TFX's end-to-end time (the
targets: at most 0.5x on the 1,000 records, 1.2x on the 60,000 images). It runs in the
environment the benchmark was started in, not with the project's ``TF_USE_LEGACY_KERAS=1``
default (TFX 1.16 does not ask for it). ``--no-tfx-example`` skips it.

Each pipeline run is ``python -m pipeline.local_runner --data DIR`` with default flags (its own
80/20 split), timed end to end. In the same run, a plain Keras script with the standard recipe
(two 3x3 convolutions per block with batch norm, random rotation +-10 degrees, zoom +-15%,
shifts +-10%, Adam 1e-3, batch 32, 40 epochs) trains on all the same images (the pipeline keeps
a fifth of them for its eval split): a strong baseline, not a weak one.

The MNIST files are not part of this repository: ``--mnist-records`` (env
``MNIST_TFX_RECORDS``) and ``--mnist-test`` (env ``MNIST_TEST_DIR``) name them; the benchmark
says where to get them when they are missing. Usage::

    python benchmarks/small_data_bench.py [--datasets fashion,handwriting,default] [--repeats 1]
        [--no-tfx-example]

Prints a table per dataset (medians over repeats) and writes its runs into
``benchmarks/out/small_data_bench.json``, keeping the other datasets' last figures (``measured``
says when and where each dataset was run).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine  # noqa: E402
from benchmarks.tfx_example import (  # noqa: E402
    batched_accuracy,
    example_result,
    execution_seconds,
    run_example,
    score_example_model,
    write_tfx_records,
)
from contracts.runtime import configure_tensorflow  # noqa: E402

USER_ENV = dict(os.environ)  # TFX's example runs as the user would run it, without our defaults
configure_tensorflow()

FASHION = Path("/usr/share/datasets/fashion-mnist")
OUT = Path(__file__).resolve().parent / "out"
DATASETS = ("fashion", "handwriting", "default", "fashion-full")
AUTOMATIC = ("fashion", "handwriting", "default")  # fashion-full (~10 minutes) only when named
WITH_TFX_EXAMPLE = ("handwriting", "fashion-full")
TARGET_RATIO = {"handwriting": 0.5, "fashion-full": 1.2}  # ours / TFX's example, end to end
MNIST_TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
FASHION_TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
FASHION_TEST_FILES = MNIST_TEST_FILES  # the same names, in Debian's Fashion-MNIST folder
GET_RECORDS = ("TFX's MNIST example records: git clone --depth 1 https://github.com/tensorflow/tfx "
               "and pass --mnist-records tfx/tfx/examples/mnist/data/mnist.tfrecord "
               "(or set MNIST_TFX_RECORDS)")
GET_TEST = ("MNIST's test digits: download t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
            "(https://storage.googleapis.com/cvdf-datasets/mnist/) into a folder and pass "
            "--mnist-test FOLDER (or set MNIST_TEST_DIR)")


def read_idx(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) from a gzipped IDX pair (no project code)."""
    with gzip.open(images) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(labels) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return x, y


def read_tfx_records(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """TFX's MNIST example records (``image_floats`` = pixel/255 - 0.5, ``image_class``)."""
    import tensorflow as tf

    images, labels = [], []
    for record in tf.data.TFRecordDataset(str(path)):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        images.append(np.asarray(feature["image_floats"].float_list.value, np.float32))
        labels.append(int(feature["image_class"].int64_list.value[0]))
    x = np.clip(np.round((np.stack(images) + 0.5) * 255.0), 0, 255).astype(np.uint8)
    return x.reshape(-1, 28, 28), np.asarray(labels, np.int64)


def scaled(x: np.ndarray) -> np.ndarray:
    return (x[..., None] / 255.0).astype(np.float32)


def read_fashion(files: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's images and labels from ``FASHION_TRAIN_FILES`` or ``FASHION_TEST_FILES``."""
    paths = [FASHION / name for name in files]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise SystemExit(f"Fashion-MNIST needs {', '.join(missing)}: install Debian's "
                         "dataset-fashion-mnist")
    return read_idx(*paths)


def per_class_sample(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of ``per_class`` random examples of each of the 10 classes in labels ``y``."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False)
                           for c in range(10)])


def sample_folder(dest: Path, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Write ``per_class`` random Fashion-MNIST training images of each class as ``dest/<class>/<n>.png``."""
    from PIL import Image

    x, y = read_fashion(FASHION_TRAIN_FILES)
    picked = per_class_sample(y, per_class, seed)
    for n, i in enumerate(picked):
        folder = dest / str(int(y[i]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i], mode="L").save(folder / f"{n}.png")
    return x[picked], y[picked]


KERAS_SCRIPT = r"""
import json, sys, time
import numpy as np
import tensorflow as tf
data = np.load(sys.argv[1])
x = (data["x"][..., None] / 255.0).astype(np.float32)
k, L = tf.keras, tf.keras.layers
tf.keras.utils.set_random_seed(int(sys.argv[2]))
inputs = k.Input((28, 28, 1))
h = L.RandomRotation(10 / 360, fill_mode="constant")(inputs)
h = L.RandomZoom(0.15, fill_mode="constant")(h)
h = L.RandomTranslation(0.1, 0.1, fill_mode="constant")(h)
for filters in (32, 64):
    for _ in range(2):
        h = L.Conv2D(filters, 3, padding="same", use_bias=False)(h)
        h = L.Activation("relu")(L.BatchNormalization()(h))
    h = L.MaxPooling2D()(h)
h = L.Dropout(0.5)(L.Dense(128, activation="relu")(L.Flatten()(h)))
model = k.Model(inputs, L.Dense(10, activation="softmax")(h))
model.compile(k.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
started = time.monotonic()
model.fit(x, data["y"], batch_size=32, epochs=int(sys.argv[3]), verbose=0)
seconds = time.monotonic() - started
accuracy = model.evaluate(data["xt"], data["yt"], verbose=0)[1]
print(json.dumps({"accuracy": float(accuracy), "train_seconds": seconds}))
"""


def keras_script(x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray, tmp: Path,
                 seed: int, epochs: int) -> dict[str, float]:
    """The plain Keras recipe, in its own process (its own TensorFlow state and threads)."""
    arrays = tmp / "arrays.npz"
    np.savez(arrays, x=x, y=y, xt=xt, yt=yt)
    script = tmp / "keras_script.py"
    script.write_text(KERAS_SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, str(script), str(arrays), str(seed), str(epochs)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_pipeline(data: Path | None, tmp: Path, name: str,
                 extra_args: tuple[str, ...] = ()) -> dict[str, object]:
    """``python -m pipeline.local_runner [--data DATA]`` with default flags (plus ``extra_args``,
    ``--pipeline-args``), timed as a user sees it."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [sys.executable, "-m", "pipeline.local_runner", "--model-name", name,
            "--pipeline-root", str(tmp / "root"), "--metadata", str(tmp / "metadata.sqlite"),
            "--serving-dir", str(tmp / "serving"), "--log-dir", str(tmp / "logs")]
    if data is not None:
        args[3:3] = ["--data", str(data)]
    args += list(extra_args)
    started = time.monotonic()
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"pipeline failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return {"seconds": seconds, "output": done.stdout}


def pipeline_result(tmp: Path, name: str) -> dict[str, object]:
    """Blessing, eval accuracy, the budget and the trained SavedModel's path, from MLMD."""
    from ml_metadata.metadata_store import metadata_store

    from metastore.metadata_config import connection_config
    from pipeline.run_summary import summarize_run

    store = metadata_store.MetadataStore(connection_config(str(tmp / "metadata.sqlite")))
    summary = summarize_run(store, name)
    if summary is None or not summary.model_uri:
        raise SystemExit("the pipeline left no trained model in MLMD")
    return {"blessed": summary.blessed, "eval_accuracy": summary.accuracy,
            "pushed_version": summary.pushed_version, "training": summary.training,
            "components_s": execution_seconds(store, summary.pipeline_name),
            "saved_model": os.path.join(summary.model_uri, "Format-Serving")}


def score(saved_model: str, xt: np.ndarray, yt: np.ndarray) -> float:
    """Test accuracy of our model: its ``serving_default`` takes images in [0, 1]."""
    return batched_accuracy(saved_model, xt, yt, lambda images: images)


def fashion_full_records(args: argparse.Namespace) -> Path:
    """All 60,000 Fashion-MNIST training images as one TFRecord in TFX's example format, once."""
    folder = args.scratch / "fashion-full"
    if not (folder / "fashion.tfrecord").is_file():
        x, y = read_fashion(FASHION_TRAIN_FILES)
        write_tfx_records(folder / "fashion.tfrecord.part", x, y)
        (folder / "fashion.tfrecord.part").rename(folder / "fashion.tfrecord")
    return folder


def tfx_example(data: Path, tmp: Path, xt: np.ndarray, yt: np.ndarray) -> dict[str, object]:
    """TFX's MNIST example pipeline on ``data`` (timed start to exit), its model scored on xt."""
    run = run_example(data, tmp / "tfx-example", env=USER_ENV)
    result = example_result(tmp / "tfx-example")
    result["test_accuracy"] = score_example_model(str(result.pop("saved_model")), xt, yt)
    result["end_to_end_s"] = run["seconds"]
    result["TF_USE_LEGACY_KERAS"] = USER_ENV.get("TF_USE_LEGACY_KERAS", "unset (Keras 3)")
    return result


def one_repeat(dataset: str, args: argparse.Namespace, seed: int) -> dict[str, object]:
    """One pipeline run, then TFX's example and the plain script where they apply, on ``dataset``."""
    with tempfile.TemporaryDirectory(prefix=f"small-data-{dataset}-") as name:
        tmp = Path(name)
        extra: dict[str, float] = {}
        if dataset == "fashion-full":
            xt, yt = read_fashion(FASHION_TEST_FILES)
            data: Path | None = fashion_full_records(args)
        elif dataset == "fashion":
            xt, yt = read_fashion(FASHION_TEST_FILES)
            x, y = sample_folder(tmp / "images", args.per_class, seed)
            data = tmp / "images"
        else:
            xt, yt = read_idx(*(args.mnist_test / f for f in MNIST_TEST_FILES))
            x, y = read_tfx_records(args.mnist_records)
            data = None
            if dataset == "handwriting":
                data = tmp / "records"
                data.mkdir()
                shutil.copy(args.mnist_records, data / "mnist.tfrecord")
        run = run_pipeline(data, tmp, "small", tuple(shlex.split(args.pipeline_args)))
        result = pipeline_result(tmp, "small")
        saved_model = str(result.pop("saved_model"))
        result["test_accuracy"] = score(saved_model, scaled(xt), yt)
        result["end_to_end_s"] = run["seconds"]
        if dataset == "default":  # the make run model on TFX's 1,000 records too
            extra["tfx_records_accuracy"] = score(saved_model, scaled(x), y)
            return {"pipeline": {**result, **extra}, "keras": None, "tfx_example": None,
                    "output": run["output"]}
        example = None
        if dataset in WITH_TFX_EXAMPLE and not args.no_tfx_example:
            assert data is not None
            example = tfx_example(data, tmp, xt, yt)
            example["ours_over_tfx"] = result["end_to_end_s"] / example["end_to_end_s"]
        keras = None
        if dataset != "fashion-full":  # 40 epochs over 60,000 images would take hours here
            keras = keras_script(x, y, scaled(xt), yt, tmp, seed, args.keras_epochs)
    return {"pipeline": result, "keras": keras, "tfx_example": example, "output": run["output"]}


def report(dataset: str, runs: list[dict[str, object]], args: argparse.Namespace) -> None:
    pipe = [r["pipeline"] for r in runs]
    pipe_acc = statistics.median(p["test_accuracy"] for p in pipe)
    pipe_s = statistics.median(p["end_to_end_s"] for p in pipe)
    title = {"fashion": f"{10 * args.per_class} Fashion-MNIST images; test: 10,000 images",
             "handwriting": "TFX's 1,000 MNIST example records; test: MNIST's 10,000 digits",
             "default": "make run's model (embedded digits); test: MNIST's 10,000 digits",
             "fashion-full": "all 60,000 Fashion-MNIST training images as TFX example records; "
                             "test: 10,000 images"}[dataset]
    print(f"\n== {dataset}: {title}, {len(runs)} repeat(s), medians")
    rows = [("pipeline test accuracy", f"{pipe_acc:.4f}"),
            ("pipeline eval accuracy (TFMA)", ", ".join(f"{p['eval_accuracy']:.4f}" for p in pipe)),
            ("blessed (default flags)", ", ".join(str(p["blessed"]) for p in pipe)),
            ("pipeline end to end", f"{pipe_s:.1f} s")]
    if args.pipeline_args:
        rows.insert(0, ("pipeline extra flags", args.pipeline_args))
    if dataset == "default":
        rows.append(("on TFX's 1,000 records",
                     f"{statistics.median(p['tfx_records_accuracy'] for p in pipe):.4f}"))
    elif runs[0]["keras"] is not None:
        keras_acc = statistics.median(r["keras"]["accuracy"] for r in runs)
        keras_s = statistics.median(r["keras"]["train_seconds"] for r in runs)
        rows += [("plain Keras test accuracy", f"{keras_acc:.4f}"),
                 ("pipeline - Keras", f"{100 * (pipe_acc - keras_acc):+.1f} points"),
                 ("plain Keras training", f"{keras_s:.1f} s")]
    rows.append(("pipeline components", ", ".join(
        f"{k} {v:.0f} s" for k, v in pipe[0].get("components_s", {}).items())))
    rows += tfx_example_rows(dataset, runs, pipe_acc)
    training = pipe[0]["training"]
    rows += [("budget", training.get("reason", "-")), ("stopped by", training.get("stopped_by", "-"))]
    for label, value in rows:
        print(f"{label:34}{value}")


def tfx_example_rows(dataset: str, runs: list[dict[str, object]],
                     pipe_acc: float) -> list[tuple[str, str]]:
    """The report's lines for TFX's example (none when it did not run)."""
    examples = [r["tfx_example"] for r in runs if r.get("tfx_example")]
    if not examples:
        return []
    acc = statistics.median(e["test_accuracy"] for e in examples)
    ratio = statistics.median(e["ours_over_tfx"] for e in examples)
    evals = ", ".join("-" if e["eval_accuracy"] is None else f"{e['eval_accuracy']:.4f}"
                      for e in examples)
    parts = examples[0]["components_s"]
    return [("TFX example test accuracy", f"{acc:.4f}"),
            ("TFX example eval accuracy (TFMA)", evals),
            ("TFX example pushed (blessed 0.8)", ", ".join(str(e["pushed"]) for e in examples)),
            ("pipeline - TFX example", f"{100 * (pipe_acc - acc):+.1f} points"),
            ("TFX example end to end",
             f"{statistics.median(e['end_to_end_s'] for e in examples):.1f} s"),
            ("ours / TFX example, end to end",
             f"{ratio:.2f}x (target <= {TARGET_RATIO[dataset]}x: "
             f"{'met' if ratio <= TARGET_RATIO[dataset] else 'NOT met'})"),
            ("TFX example components", ", ".join(f"{k} {v:.0f} s" for k, v in parts.items()))]


def check_inputs(args: argparse.Namespace, datasets: list[str]) -> None:
    """Every file the chosen datasets need, or one message per missing one saying how to get it."""
    missing = []
    if {"fashion", "fashion-full"} & set(datasets) and not FASHION.is_dir():
        missing.append("Fashion-MNIST: apt-get install dataset-fashion-mnist")
    if {"handwriting", "default"} & set(datasets):
        if args.mnist_records is None or not args.mnist_records.is_file():
            missing.append(GET_RECORDS)
        if args.mnist_test is None or not all((args.mnist_test / f).is_file()
                                              for f in MNIST_TEST_FILES):
            missing.append(GET_TEST)
    if missing:
        raise SystemExit("missing inputs (or leave them out with --datasets):\n  - "
                         + "\n  - ".join(missing))


def chosen_datasets(args: argparse.Namespace) -> list[str]:
    """``--datasets``, or every dataset but fashion-full whose inputs are present (the rest named
    on stderr)."""
    if args.datasets is not None:
        return [d.strip() for d in args.datasets.split(",") if d.strip()]
    present = []
    for dataset in AUTOMATIC:
        try:
            check_inputs(args, [dataset])
            present.append(dataset)
        except SystemExit as missing:
            print(f"skipping {dataset}: {missing}", file=sys.stderr)
    return present


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=None,
                        help=f"comma-separated, of {', '.join(DATASETS)}; default: all but "
                             "fashion-full (about ten minutes) whose inputs are here (the others "
                             "are named, with how to get them)")
    parser.add_argument("--no-tfx-example", action="store_true",
                        help="do not run TFX's own MNIST example pipeline on handwriting and "
                             "fashion-full")
    parser.add_argument("--pipeline-args", default="",
                        help="extra flags for every pipeline run, e.g. '--precision float32' "
                             "(default: none, the pipeline's defaults)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keras-epochs", type=int, default=40)
    env_path = os.environ.get("MNIST_TFX_RECORDS")
    parser.add_argument("--mnist-records", type=Path, default=Path(env_path) if env_path else None,
                        help="TFX's tfx/examples/mnist/data/mnist.tfrecord (env MNIST_TFX_RECORDS)")
    env_dir = os.environ.get("MNIST_TEST_DIR")
    parser.add_argument("--mnist-test", type=Path, default=Path(env_dir) if env_dir else None,
                        help="folder with MNIST's t10k-*-ubyte.gz (env MNIST_TEST_DIR)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    datasets = chosen_datasets(args)
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
        raise SystemExit(f"unknown dataset(s) {unknown}; choose from {', '.join(DATASETS)}")
    check_inputs(args, datasets)
    results: dict[str, list[dict[str, object]]] = {}
    with tempfile.TemporaryDirectory(prefix="small-data-shared-") as scratch:
        args.scratch = Path(scratch)  # fashion-full's records, written once for every run
        for dataset in datasets:
            runs = [one_repeat(dataset, args, args.seed + repeat)
                    for repeat in range(args.repeats)]
            for run in runs:
                print(run.pop("output"), file=sys.stderr)
            results[dataset] = runs
    print(f"machine: {machine()}")
    for dataset, runs in results.items():
        report(dataset, runs, args)
    save_results(OUT / "small_data_bench.json", results, args.per_class)


def save_results(path: Path, results: dict[str, list[dict[str, object]]],
                 per_class: int) -> None:
    """Write ``results`` into ``path``, keeping the datasets this run did not measure (a run of
    one dataset used to erase the others' figures), with when and where each was measured.
    Atomic: a temporary file, then a rename."""
    previous: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):  # none yet, or unreadable: start afresh
        loaded = json.loads(path.read_text())
        if isinstance(loaded, dict):
            previous = loaded
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    measured = dict(previous.get("measured") or {})
    merged = dict(previous.get("results") or {})
    for dataset, runs in results.items():
        merged[dataset] = runs
        measured[dataset] = {"at": stamp, "machine": machine(), "per_class": per_class}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps({"measured": measured, "results": merged}, indent=2))
    os.replace(partial, path)


if __name__ == "__main__":
    main()
