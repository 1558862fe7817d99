"""Capture files for tests, written as ``contracts/capture.py`` says the server writes them.

``<capture_dir>/<serving_name>/<version>/capture-<utc>-<pid>-<seq>.tfrecord``: a TFRecord of TF
Serving ``PredictionLog`` protos, one per answered request, with the request's inputs and the
response's ``probabilities`` as TensorProtos (or a ``classify_log``). Independent of
``serving/capture.py`` on purpose: the reader is checked against the contract, not against one
writer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np

from contracts import capture as layout
from contracts.signatures import (
    INPUT_EXAMPLES,
    INPUT_IMAGE_BYTES,
    INPUT_IMAGES,
    OUTPUT_PROBABILITIES,
)

FORMS = ("images", "image_bytes", "examples", "classify")


def confident(labels: Sequence[int], classes: int = 10, confidence: float = 0.9) -> np.ndarray:
    """Probabilities of a model that answers ``labels`` with ``confidence``."""
    rows = np.full((len(labels), classes), (1 - confidence) / (classes - 1), np.float32)
    rows[np.arange(len(labels)), np.asarray(labels)] = confidence
    return rows


def _png(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(out, format="PNG")
    return out.getvalue()


def _record(images: np.ndarray, probabilities: np.ndarray, serving_name: str, version: int,
            at: float, form: str, class_names: Sequence[str]) -> bytes:
    import tensorflow as tf
    from google.protobuf import wrappers_pb2
    from tensorflow_serving.apis import model_pb2, prediction_log_pb2

    from datasources.readers import to_tf_examples

    spec = model_pb2.ModelSpec(name=serving_name, version=wrappers_pb2.Int64Value(value=version),
                               signature_name="serving_default")
    record = prediction_log_pb2.PredictionLog()
    record.log_metadata.model_spec.CopyFrom(spec)
    record.log_metadata.timestamp_secs = int(at)
    record.log_metadata.sampling_config.sampling_rate = 1.0
    if form == "classify":
        from tensorflow.core.example import example_pb2

        log = record.classify_log
        for serialized in to_tf_examples(images, [0] * len(images)):
            log.request.input.example_list.examples.add().CopyFrom(
                example_pb2.Example.FromString(serialized))
        for row in probabilities.tolist():
            classes = log.response.result.classifications.add().classes
            for name, score in zip(class_names, row, strict=True):
                classes.add(label=name, score=score)
        return record.SerializeToString()
    log = record.predict_log
    log.request.model_spec.CopyFrom(spec)
    if form == "images":
        tensor = tf.make_tensor_proto((images.astype(np.float32) / 255.0)[..., None])
        log.request.inputs[INPUT_IMAGES].CopyFrom(tensor)
    elif form == "image_bytes":
        log.request.inputs[INPUT_IMAGE_BYTES].CopyFrom(
            tf.make_tensor_proto([_png(i) for i in images], dtype=tf.string))
    else:
        log.request.inputs[INPUT_EXAMPLES].CopyFrom(tf.make_tensor_proto(
            to_tf_examples(images, [0] * len(images)), dtype=tf.string))
    log.response.outputs[OUTPUT_PROBABILITIES].CopyFrom(tf.make_tensor_proto(probabilities))
    return record.SerializeToString()


def write_capture(capture_dir: str, serving_name: str, version: int, images: np.ndarray,
                  probabilities: np.ndarray, form: str = "images", per_request: int = 1,
                  at: float | None = None, seq: int = 1,
                  class_names: Sequence[str] = ()) -> str:
    """One finished capture file holding ``images`` in requests of ``per_request`` images."""
    import tensorflow as tf

    folder = layout.version_dir(capture_dir, serving_name, version)
    os.makedirs(folder, exist_ok=True)
    when = time.time() if at is None else at
    name = layout.file_name(time.strftime("%Y%m%dT%H%M%S", time.gmtime(when)), os.getpid(), seq)
    names = list(class_names) or [str(i) for i in range(probabilities.shape[1])]
    path = os.path.join(folder, name)
    with tf.io.TFRecordWriter(path + layout.PARTIAL_SUFFIX) as writer:
        for start in range(0, len(images), per_request):
            stop = start + per_request
            writer.write(_record(images[start:stop], probabilities[start:stop], serving_name,
                                 version, when, form, names))
    os.replace(path + layout.PARTIAL_SUFFIX, path)
    return path
