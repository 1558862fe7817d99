"""benchmarks/grpc_ceiling_bench.py compares serving start with two reference servicers; the
comparison only means something if the ``bare`` one really runs the model on every request
(and batches concurrent ones right) and the ``empty`` one answers a well-formed response."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from benchmarks.grpc_ceiling_bench import start_reference
from contracts.signatures import SERVING_DEFAULT
from serving.server import free_port


def _request(images: np.ndarray) -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mnist"
    request.model_spec.signature_name = SERVING_DEFAULT
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    return request.SerializeToString()


async def _predict_all(target: str, bodies: list[bytes]) -> list[predict_pb2.PredictResponse]:
    from grpc import aio

    async with aio.insecure_channel(target) as channel:
        call = channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                                   response_deserializer=predict_pb2.PredictResponse.FromString)
        return list(await asyncio.gather(*(call(body, timeout=30) for body in bodies)))


@pytest.mark.parametrize("kind", ["bare", "empty"])
def test_reference_servers_answer_predict(kind: str, saved_model: Path) -> None:
    images = np.random.default_rng(7).random((16, 1, 28, 28, 1)).astype(np.float32)
    port = free_port()
    proc = start_reference(kind, port, saved_model)
    try:
        # 16 concurrent one-image calls: the bare servicer batches them, each gets its own row
        responses = asyncio.run(_predict_all(f"127.0.0.1:{port}",
                                             [_request(image) for image in images]))
    finally:
        proc.terminate()
        proc.wait(30)
    if kind == "empty":
        assert all(len(r.outputs["probabilities"].float_val) == 10 for r in responses)
        return
    signature = tf.saved_model.load(str(saved_model)).signatures[SERVING_DEFAULT]
    expected = signature(images=tf.constant(images[:, 0]))["probabilities"].numpy()
    got = np.stack([tf.make_ndarray(r.outputs["probabilities"])[0] for r in responses])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
