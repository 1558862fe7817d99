"""``serving predict --grpc``: the same report as the REST client, over TF Serving's gRPC API.

Image files go to ``serving_images`` as DT_STRING tensors (the file's bytes), IDX records to
``serving_default`` as float tensors; the class names come back through ``Classify`` on one blank
tf.Example (as the REST client does with ``:classify``).
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from contracts.dictionary import default_class_names
from contracts.examples import IMAGE_KEY, IMAGE_PIXELS
from contracts.signatures import (
    INPUT_IMAGE_BYTES,
    INPUT_IMAGES,
    OUTPUT_PROBABILITIES,
    SERVING_DEFAULT,
    SERVING_IMAGES,
)
from serving.predict_client import (
    Report,
    ServerError,
    _arrays,
    _files,
    _row,
    collect,
)


def _target(url: str) -> str:
    """``host:port`` from ``grpc://host:port``, ``http://host:port`` or ``host:port``."""
    for prefix in ("grpc://", "http://", "https://"):
        if url.startswith(prefix):
            url = url[len(prefix):]
    return url.rstrip("/")


def _spec(request: Any, name: str, version: int | None, label: str | None) -> None:
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    elif label is not None:
        request.model_spec.version_label = label


def _error(exc: grpc.RpcError, target: str) -> ServerError:
    code = exc.code()
    status = {grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.INVALID_ARGUMENT: 400,
              grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.UNAVAILABLE: 503}.get(code)
    return ServerError(f"grpc {target}: {code.name}: {exc.details()}", status)


def predict_inputs_grpc(url: str, name: str, paths: list[str], version: int | None = None,
                        label: str | None = None, token: str | None = None,
                        batch_size: int = 64, limit: int | None = None,
                        timeout_s: float = 60.0) -> Report:
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import (
        classification_pb2,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    target = _target(url)
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    with grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024)]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        names: list[str] = []
        try:
            ask = classification_pb2.ClassificationRequest()
            _spec(ask, name, version, label)
            blank = ask.input.example_list.examples.add()
            blank.features.feature[IMAGE_KEY].int64_list.value.extend([0] * IMAGE_PIXELS)
            answer = stub.Classify(ask, timeout=timeout_s, metadata=metadata)
            names = [c.label for c in answer.result.classifications[0].classes]
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED,
                              grpc.StatusCode.UNAVAILABLE):
                raise _error(exc, target) from None
        items = collect(paths, limit, names)
        report = Report(name, "")
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            for group in (_files(chunk), _arrays(chunk)):
                if not group:
                    continue
                request = predict_pb2.PredictRequest()
                _spec(request, name, version, label)
                shape = tensor_shape_pb2.TensorShapeProto
                if group[0].image_bytes is not None:
                    request.model_spec.signature_name = SERVING_IMAGES
                    request.inputs[INPUT_IMAGE_BYTES].CopyFrom(tensor_pb2.TensorProto(
                        dtype=types_pb2.DT_STRING,
                        tensor_shape=shape(dim=[shape.Dim(size=len(group))]),
                        string_val=[i.image_bytes or b"" for i in group]))
                else:
                    request.model_spec.signature_name = SERVING_DEFAULT
                    stacked = (np.stack([i.pixels for i in group]).astype(np.float32)
                               / 255.0)[..., None]
                    request.inputs[INPUT_IMAGES].CopyFrom(tensor_pb2.TensorProto(
                        dtype=types_pb2.DT_FLOAT,
                        tensor_shape=shape(dim=[shape.Dim(size=d) for d in stacked.shape]),
                        tensor_content=stacked.tobytes()))
                try:
                    response = stub.Predict(request, timeout=timeout_s, metadata=metadata)
                except grpc.RpcError as exc:
                    raise _error(exc, target) from None
                report.version = str(response.model_spec.version.value)
                out = response.outputs[OUTPUT_PROBABILITIES]
                flat = (np.frombuffer(out.tensor_content, np.float32) if out.tensor_content
                        else np.asarray(out.float_val, np.float32))
                vectors = flat.reshape([d.size for d in out.tensor_shape.dim])
                for item, vector in zip(group, vectors, strict=True):
                    if not names:
                        names = default_class_names(len(vector))
                    report.rows.append(_row(item, [float(v) for v in vector], names))
    return report
