"""SavedModel warm-up, as TF Serving does it: replay ``assets.extra/tf_serving_warmup_requests``.

The file is a TFRecord of ``tensorflow.serving.PredictionLog`` protos (TFX's InfraValidator writes
it with ``RequestSpec.make_warmup``; see https://www.tensorflow.org/tfx/serving/saved_model_warmup).
``load_servable`` replays it once a version's signatures are built and before the manager marks
the version AVAILABLE, so the first real request runs on traced, warmed functions. As in TF
Serving, a record that fails makes the load fail (the version ends in END with the error), and
at most ``MAX_RECORDS`` records are read.

Predict logs run their signature on the request's tensors; Classify, Regress and MultiInference
logs run the named (else the tf.Example) signature on their serialized tf.Examples.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from serving.errors import ServingError
from serving.example_inputs import serialized_examples

WARMUP_RELPATH = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000  # TF Serving's kMaxNumRecordsPerWarmupFile

log = logging.getLogger("serving.warmup")


def warmup_file(path: str) -> str | None:
    """The warm-up file of the SavedModel at ``path``, or None when it has none."""
    candidate = os.path.join(path, WARMUP_RELPATH)
    return candidate if os.path.isfile(candidate) else None


def _calls(log: Any) -> list[tuple[str, str, dict[str, np.ndarray] | np.ndarray]]:
    """(kind, signature name, inputs) for one PredictionLog; examples as one string array."""
    import tensorflow as tf

    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        request = log.predict_log.request
        inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
        return [("predict", request.model_spec.signature_name, inputs)]
    if kind in ("classify_log", "regress_log"):
        request = getattr(log, kind).request
        return [("examples", request.model_spec.signature_name, serialized_examples(request.input))]
    if kind == "multi_inference_log":
        request = log.multi_inference_log.request
        examples = serialized_examples(request.input)
        return [("examples", task.model_spec.signature_name, examples) for task in request.tasks]
    raise ValueError(f"unsupported PredictionLog entry {kind or '(empty)'}")


def _example_call(signatures: Mapping[str, Any], name: str) -> tuple[str, Any]:
    """The signature a tf.Example request runs, and its one string input's name."""
    candidates = [signatures[name]] if name else [
        s for s in signatures.values()
        if len(s.inputs) == 1 and next(iter(s.inputs.values())).is_string]
    for sig in candidates:
        if len(sig.inputs) == 1 and next(iter(sig.inputs.values())).is_string:
            return next(iter(sig.inputs)), sig
    raise ValueError(f"no signature {name or '(any)'} takes serialized tf.Examples")


def replay(path: str, signatures: Mapping[str, Any]) -> int:
    """Run every warm-up record of the SavedModel at ``path`` once; returns how many ran.

    ``signatures``: name -> ``servable.Signature`` (its synchronous ``call``). Raises
    ``ServingError(FAILED_PRECONDITION)`` naming the file and record when one fails.
    """
    source = warmup_file(path)
    if source is None:
        return 0
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    count = 0
    try:
        records = tf.data.TFRecordDataset(source).take(MAX_RECORDS)
        for count, record in enumerate(records, 1):  # noqa: B007 - count names the failing one
            entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            for kind, name, inputs in _calls(entry):
                if kind == "predict":
                    sig = signatures.get(name or "serving_default")
                    if sig is None:
                        raise ValueError(f"signature {name!r} not in the model "
                                         f"({sorted(signatures)})")
                    sig.call(inputs)
                else:
                    key, sig = _example_call(signatures, name)
                    sig.call({key: inputs})
    except Exception as exc:  # noqa: BLE001 - any failure fails the load, as in TF Serving
        raise ServingError("FAILED_PRECONDITION",
                           f"warm-up record {count} of {source} failed: {exc}") from exc
    log.info("replayed %d warm-up request(s) of %s", count, source)
    return count
