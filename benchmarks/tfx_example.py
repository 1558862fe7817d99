"""TFX's own MNIST example pipeline (``tfx.examples.mnist``, as TFX 1.16 installs it), run as shipped.

``python benchmarks/tfx_example.py --data DIR --work DIR`` runs the example's
``_create_pipeline`` (ImportExampleGen over ``DIR``, StatisticsGen, SchemaGen, ExampleValidator,
Transform, Trainer 5,000 steps, Evaluator with its 0.8 accuracy threshold, Pusher) with its
module file ``mnist_utils_native_keras.py`` and its beam args, under BeamDagRunner as the example's
``__main__`` does, and prints one JSON line at the end. ``DIR`` holds TFRecord files of tf.Examples
in the example's format: ``image_floats`` (784 floats, pixel/255 - 0.5) and ``image_class``.

``run_example`` runs that in its own process (its own TensorFlow and Beam state) and times it
from process start to exit; ``example_result`` reads the run back from ML Metadata (the Trainer's
model, whether the Pusher pushed, TFMA's accuracy, seconds per component); ``score_example_model``
scores the trained model's ``serving_default`` signature (serialized tf.Examples) on test images.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

PIPELINE_NAME = "mnist_native_keras"  # the example's own name
SCRIPT = Path(__file__).resolve()


def example_paths(work: Path) -> dict[str, str]:
    return {"pipeline_root": str(work / "root"), "metadata_path": str(work / "metadata.sqlite"),
            "serving_model_dir": str(work / "serving")}


def tfx_example_bytes(image: np.ndarray, label: int | None = None) -> bytes:
    """One tf.Example as TFX's MNIST example data holds it: ``image_floats`` = pixel/255 - 0.5."""
    from tensorflow.core.example import example_pb2

    from datasources.readers import TFX_MNIST_IMAGE, TFX_MNIST_LABEL

    example = example_pb2.Example()
    floats = example.features.feature[TFX_MNIST_IMAGE].float_list.value
    floats.extend((np.asarray(image, np.float32).reshape(-1) / 255.0 - 0.5).tolist())
    if label is not None:
        example.features.feature[TFX_MNIST_LABEL].int64_list.value.append(int(label))
    return example.SerializeToString()


def write_tfx_records(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    """Images (N, 28, 28) uint8 and labels as one TFRecord file in TFX's MNIST example format."""
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for image, label in zip(x, y, strict=True):
            writer.write(tfx_example_bytes(image, int(label)))
    return path


def run_example(data: Path, work: Path, env: dict[str, str] | None = None) -> dict[str, object]:
    """``python benchmarks/tfx_example.py --data DATA --work WORK``, timed from start to exit.

    ``env``: the environment to run it in (default: this process's), TensorFlow's C++ logs quiet.
    """
    env = {**(os.environ if env is None else env), "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(SCRIPT), "--data", str(data), "--work", str(work)],
                          env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"TFX's MNIST example failed ({done.returncode}):\n"
                         f"{done.stdout}\n{done.stderr[-20000:]}")
    return {"seconds": seconds, "output": done.stdout + done.stderr[-5000:]}


def _eval_accuracy(evaluation_uri: str) -> float | None:
    import tensorflow_model_analysis as tfma

    for per_slice in tfma.load_metrics(evaluation_uri):
        for per_key in per_slice.metric_keys_and_values:
            if per_key.key.name == "sparse_categorical_accuracy" and \
                    per_key.value.HasField("double_value"):
                return float(per_key.value.double_value.value)
    return None


def execution_seconds(store: object, pipeline_name: str) -> dict[str, float]:
    """Seconds per component of a TFX run, from its executions' MLMD timestamps (any pipeline:
    ours is read the same way)."""
    components: dict[str, float] = {}
    for execution in store.get_executions():  # type: ignore[attr-defined]
        node = [c.name for c in store.get_contexts_by_execution(execution.id)  # type: ignore[attr-defined]
                if c.name.startswith(f"{pipeline_name}.")]
        name = node[0].split(".", 1)[1] if node else str(execution.id)
        components[name] = round((execution.last_update_time_since_epoch
                                  - execution.create_time_since_epoch) / 1000.0, 1)
    return components


def example_result(work: Path) -> dict[str, object]:
    """The run's Trainer model, blessing, push, TFMA accuracy and seconds per component, from MLMD."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    from metastore.metadata_config import connection_config

    metadata_path = example_paths(work)["metadata_path"]
    store = metadata_store.MetadataStore(connection_config(metadata_path))
    types = {t.id: t.name for t in store.get_artifact_types()}
    by_type: dict[str, list] = {}
    for artifact in store.get_artifacts():
        if artifact.state == pb.Artifact.LIVE:
            by_type.setdefault(types[artifact.type_id], []).append(artifact)
    components = execution_seconds(store, PIPELINE_NAME)
    models = sorted(by_type.get("Model", []), key=lambda a: a.id)
    if not models:
        raise SystemExit(f"TFX's example left no trained model in {metadata_path}")
    pushed = [a for a in by_type.get("PushedModel", [])
              if a.custom_properties["pushed"].int_value == 1]
    blessings = [a for a in by_type.get("ModelBlessing", [])
                 if a.custom_properties["blessed"].int_value == 1]
    evaluations = sorted(by_type.get("ModelEvaluation", []), key=lambda a: a.id)
    return {"blessed": bool(blessings), "pushed": bool(pushed),
            "eval_accuracy": _eval_accuracy(evaluations[-1].uri) if evaluations else None,
            "components_s": components,
            "saved_model": os.path.join(models[-1].uri, "Format-Serving")}


def batched_accuracy(saved_model: str, xt: np.ndarray, yt: np.ndarray,
                     encode: Callable[[np.ndarray], object]) -> float:
    """Test accuracy of ``saved_model``'s ``serving_default`` (its one input), fed
    ``encode(images)`` 1,000 images at a time."""
    import tensorflow as tf

    predict = tf.saved_model.load(saved_model).signatures["serving_default"]
    [input_name] = predict.structured_input_signature[1].keys()
    predictions = []
    for start in range(0, len(xt), 1000):
        out = predict(**{input_name: tf.constant(encode(xt[start:start + 1000]))})
        predictions.append(np.argmax(next(iter(out.values())).numpy(), axis=1))
    return float(np.mean(np.concatenate(predictions) == np.asarray(yt)))


def score_example_model(saved_model: str, xt: np.ndarray, yt: np.ndarray) -> float:
    """Test accuracy of the example's model: its ``serving_default`` takes serialized tf.Examples."""
    return batched_accuracy(saved_model, xt, yt,
                            lambda images: [tfx_example_bytes(image) for image in images])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="folder of TFRecord files in the example's format")
    parser.add_argument("--work", type=Path, required=True,
                        help="pipeline root, metadata and serving folder go here")
    parser.add_argument("--summary", action="store_true",
                        help="after the run, also read its results back from ML Metadata")
    args = parser.parse_args(argv)
    started = time.monotonic()
    from tfx.examples import mnist
    from tfx.examples.mnist import mnist_pipeline_native_keras as example
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    module_file = os.path.join(os.path.dirname(mnist.__file__), "mnist_utils_native_keras.py")
    BeamDagRunner().run(example._create_pipeline(
        pipeline_name=PIPELINE_NAME, data_root=str(args.data.resolve()), module_file=module_file,
        beam_pipeline_args=example._beam_pipeline_args,
        **example_paths(args.work.resolve())))
    line: dict[str, object] = {"pipeline_seconds": time.monotonic() - started}
    if args.summary:
        line.update(example_result(args.work.resolve()))
    print(json.dumps(line))


if __name__ == "__main__":
    main()
