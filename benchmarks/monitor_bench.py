"""``mlmodel monitor`` on 10,000 captured requests: wall time of the whole command, cold.

Setup (not timed): an ML Metadata lineage as TFX records it (``tfx_records.add_pipeline_run``
with the upstream components), whose ExampleGen ``Examples`` artifact points at real
``Split-train`` files of scikit-learn's bundled digits (1,797 images, upscaled to 28 x 28); the
model deployed as version 1; then ``--requests`` captured requests (one image each, the
``images`` input as the server logs it) in capture files of about 16 MB, as ``contracts/capture.py``
lays them out. Captured images are digits with noise, so the run also exercises a real verdict.

Timed, in the same run: ``python -m registry monitor`` (a new process each time, imports
included; the report is stored in MLMD), and as the floor, a process that only imports
TensorFlow Data Validation and the TF Serving protos. Median of ``--repeat`` runs.

    python benchmarks/monitor_bench.py [--requests 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contracts.runtime import configure_tensorflow  # noqa: E402

configure_tensorflow()

TARGET_S = 20.0
PER_FILE = 5000  # requests per capture file (about 16 MB of float32 images, the server's rotation)


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits as uint8 [n, 28, 28] (white on black) and their labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    small = (data.images / 16.0 * 255).astype(np.uint8)
    images = np.stack([np.asarray(Image.fromarray(i).resize((20, 20), Image.BILINEAR))
                       for i in small])
    padded = np.zeros((len(images), 28, 28), np.uint8)
    padded[:, 4:24, 4:24] = images
    return padded, data.target.astype(np.int64)


def build(root: Path, requests: int) -> dict[str, str]:
    import tensorflow as tf
    from ml_metadata.proto import metadata_store_pb2 as pb

    from benchmarks.tfx_records import add_pipeline_run, connect, fake_model
    from contracts.dictionary import format_dictionary
    from contracts.examples import DIGIT_CLASS_NAMES
    from datasources.readers import to_tf_examples
    from registry.api import open_registry
    from tests.registry.capture_files import confident, write_capture

    metadata, serving_dir = str(root / "metadata.sqlite"), str(root / "serving_model")
    model_dir = fake_model(root)
    Path(model_dir, "assets.extra", "dict.tsv").write_text(format_dictionary(DIGIT_CLASS_NAMES))
    add_pipeline_run(metadata, "mnist", model_dir, str(root / "pushed"), upstream=True)
    images, labels = digits()
    split = root / "examples" / "Split-train"
    split.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(split / "data_tfrecord-00000-of-00001.gz"),
                              options="GZIP") as writer:
        for record in to_tf_examples(images, labels):
            writer.write(record)
    store = connect(metadata)
    [examples] = [a for a in store.get_artifacts_by_type("Examples")]
    examples.uri = str(root / "examples")
    store.put_artifacts([examples])
    assert examples.state == pb.Artifact.LIVE
    open_registry(metadata, serving_dir).deploy("mnist", user="root")
    rng = np.random.default_rng(0)
    picked = rng.integers(0, len(images), requests)
    noise = rng.integers(0, 12, (requests, 28, 28))
    served = np.clip(images[picked].astype(np.int64) + noise, 0, 255).astype(np.uint8)
    capture = str(root / "capture")
    for seq, start in enumerate(range(0, requests, PER_FILE)):
        stop = min(requests, start + PER_FILE)
        write_capture(capture, "root_mnist", 1, served[start:stop],
                      confident(labels[picked[start:stop]]), seq=seq,
                      class_names=DIGIT_CLASS_NAMES)
    return {"metadata": metadata, "serving_dir": serving_dir, "capture": capture}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """(wall seconds, CPU seconds of the process, exit code, what the command said: its JSON
    report's verdict, or its error). CPU time barely moves when other work shares the cores;
    wall time does."""
    started, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu
    try:
        report = json.loads(done.stdout)
        said = (f"{report['requests']:,} requests, drifted: "
                f"{', '.join(report['drifted']) or 'nothing'}")
    except ValueError:
        said = " ".join(done.stderr.strip().splitlines()[-1:])
    return seconds, cpu, done.returncode, said


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    with tempfile.TemporaryDirectory(prefix="monitor_bench-") as tmp:
        paths = build(Path(tmp), args.requests)
        monitor = [sys.executable, "-m", "registry", "monitor", "mnist", "--capture-dir",
                   paths["capture"], "--metadata", paths["metadata"], "--serving-dir",
                   paths["serving_dir"], "--output", "json"]
        floor = [sys.executable, "-W", "ignore", "-c",
                 "import tensorflow_data_validation, tensorflow_serving.apis.prediction_log_pb2"]
        runs: dict[str, list[float]] = {"monitor": [], "imports only": []}
        cpu: dict[str, list[float]] = {"monitor": [], "imports only": []}
        last = ""
        for _ in range(args.repeat):  # alternate, so both see the same machine load
            seconds, used, code, said = timed(monitor, env)
            if code not in (0, 3):
                raise SystemExit(f"monitor failed (exit {code}): {said}")
            runs["monitor"].append(seconds)
            cpu["monitor"].append(used)
            last = f"exit {code}: {said}"
            seconds, used, _, _ = timed(floor, env)
            runs["imports only"].append(seconds)
            cpu["imports only"].append(used)
    print(f"mlmodel monitor on {args.requests:,} captured requests (median of {args.repeat}, "
          f"cold processes; target <= {TARGET_S:.0f} s; load average at the end "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"{'case':<14} {'median s':>9} {'runs':>24} {'median CPU s':>13}")
    for case, values in runs.items():
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(f"{case:<14} {statistics.median(values):>9.2f} {shown:>24} "
              f"{statistics.median(cpu[case]):>13.2f}")
    median = statistics.median(runs["monitor"])
    print(f"monitor minus imports: {median - statistics.median(runs['imports only']):.2f} s; "
          f"{'met' if median <= TARGET_S else 'NOT met'}; last run {last}")


if __name__ == "__main__":
    main()
