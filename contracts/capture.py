"""Where captured requests live and how their files are named: the server writes, `mlmodel` reads.

Layout: ``<capture_dir>/<serving_name>/<version>/<file>``. Each file is a TFRecord of TF Serving's
``tensorflow.serving.PredictionLog`` protos (the format of TF Serving's request logging), one
record per sampled request with its response. A file being written carries the ``.tmp`` suffix
and is renamed to its final name when it is rotated, so readers only ever see whole files.

What one record holds (written by ``serving/capture_worker.py``; every protocol, REST TF Serving,
KServe v2, SageMaker and gRPC, is logged the same way, as TF Serving would log the call):

* ``log_metadata``: ``model_spec`` (serving name, version, signature name),
  ``sampling_config.sampling_rate`` (the server's ``--capture-rate``) and ``timestamp_secs`` (Unix
  seconds when the request was answered). The file name's stamp is when the file was opened.
* predict requests (``:predict``, ``/v2/.../infer``, ``/invocations``, gRPC Predict) are a
  ``predict_log``: ``request.inputs`` are the tensors exactly as the model received them
  (``TensorProto``), ``response.outputs`` what it returned. Inputs are one of, by signature:

  - ``serving_default``: ``images`` DT_FLOAT [N, 28, 28, 1], grey values in [0, 1] (0 = black
    background, 1 = ink; the pixels already divided by 255);
  - ``serving_images``: ``image_bytes`` DT_STRING [N], encoded image files (PNG, JPEG, GIF or
    BMP; WebP arrives transcoded to PNG): decode to grey, resize to 28x28, divide by 255;
  - ``serving_examples``: ``examples`` DT_STRING [N], serialized ``tf.Example`` in the raw layout
    (feature ``image``: 784 int64 grey values 0..255, row-major).

  ``response.outputs["probabilities"]`` is DT_FLOAT [N, num_classes]; the predicted class is its
  argmax (a class index into the version's dictionary), the confidence its max.
* classify requests (``:classify``, SageMaker ``tfs-method=classify``, gRPC Classify) are a
  ``classify_log``: ``request.input.example_list`` holds the ``tf.Example`` s (raw layout as
  above) and ``response.result.classifications[i].classes`` one (label, score) per class, label
  being the class name (or its index when the model has no dictionary).
"""

from __future__ import annotations

import os
import re

FILE_PREFIX = "capture-"
FILE_SUFFIX = ".tfrecord"
PARTIAL_SUFFIX = ".tmp"
PREDICTION_LOG = "tensorflow.serving.PredictionLog"  # the record type (tensorflow-serving-api)
# capture-<utc yyyymmddThhmmss>-<pid>-<seq>.tfrecord: sorts by time, unique per process.
_NAME = re.compile(r"^capture-(\d{8}T\d{6})-(\d+)-(\d+)\.tfrecord$")


def version_dir(capture_dir: str, serving_name: str, version: int) -> str:
    """The folder one version's captured requests go to."""
    return os.path.join(capture_dir, serving_name, str(int(version)))


def file_name(utc_stamp: str, pid: int, seq: int) -> str:
    """A finished capture file's name; ``utc_stamp`` is ``%Y%m%dT%H%M%S`` in UTC."""
    return f"{FILE_PREFIX}{utc_stamp}-{pid}-{seq:06d}{FILE_SUFFIX}"


def is_capture_file(name: str) -> bool:
    """True for a finished (rotated) capture file; partial ``.tmp`` files are never read."""
    return _NAME.match(name) is not None


