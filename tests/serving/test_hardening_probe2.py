"""Issue 22 (the second adversarial probe): claimed shapes, image bombs, decode errors.

One in-process server (REST and gRPC on the same runtime) serves the real test SavedModel.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from contracts.signatures import SERVING_DEFAULT, SERVING_EXAMPLES, SERVING_IMAGES
from serving import grpc_codec
from serving.app import ServerConfig
from serving.server import free_port
from tests.bombs import bomb_png

from .conftest import FakeSource, Server, start_server

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, saved_model: Path) -> Iterator[Server]:
    source = FakeSource(tmp_path_factory.mktemp("probe2") / "serving_model", saved_model)
    source.deploy("root_mnist", 1)
    srv = start_server(source, ServerConfig(port=0, grpc_port=free_port()))
    yield srv
    srv.http.stop()
    srv.runtime.close()


def stub(srv: Server) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{srv.http.config.grpc_port}"))


def tensor(shape: list[int], dtype: int = types_pb2.DT_FLOAT, **values: object
           ) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape]))
    for field, value in values.items():
        if field == "tensor_content":
            proto.tensor_content = value  # type: ignore[assignment]
        else:
            getattr(proto, field).extend(value)  # type: ignore[arg-type]
    return proto


def grpc_call(srv: Server, inputs: dict[str, tensor_pb2.TensorProto],
              signature: str = "") -> tuple[grpc.StatusCode, str]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "root_mnist"
    request.model_spec.signature_name = signature
    for key, proto in inputs.items():
        request.inputs[key].CopyFrom(proto)
    try:
        stub(srv).Predict(request, timeout=60)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def rest_predict(srv: Server, body: object) -> requests.Response:
    return requests.post(f"{srv.url}/v1/models/root_mnist:predict", json=body, timeout=60)


# -- 1. claimed shapes ---------------------------------------------------------------------------
def test_a_tiny_grpc_message_claiming_a_huge_shape_is_refused_at_once(both: Server) -> None:
    """54 bytes claiming [250000,28,28,1] filled from one value took ~1 GB and 3-4 s of the
    event loop; now it is INVALID_ARGUMENT before anything is allocated, and health is
    answered meanwhile."""
    huge = tensor([250_000, 28, 28, 1], float_val=[0.5])
    assert huge.ByteSize() < 100
    started = time.perf_counter()
    code, message = grpc_call(both, {"images": huge})
    assert code == INVALID and "at most" in message, message
    assert time.perf_counter() - started < 1.0
    # within the row limit but more bytes than the message limit (6 MB) could carry
    code, message = grpc_call(both, {"images": tensor([10_000, 28, 28, 1], float_val=[0.5])})
    assert code == INVALID and "message limit" in message, message
    code, message = grpc_call(both, {"images": tensor(
        [1, 1 << 28], types_pb2.DT_DOUBLE, double_val=[0.5])})
    assert code == INVALID, message
    # the fill TF allows still works within the limits
    assert grpc_call(both, {"images": tensor([3, 28, 28, 1], float_val=[0.5])})[0] \
        == grpc.StatusCode.OK


def test_health_is_answered_while_a_big_grpc_tensor_converts(both: Server) -> None:
    """A tensor claiming megabytes converts in a thread: health checks do not wait behind it."""
    content = np.full((2000, 28, 28, 1), 0.5, np.float32).tobytes()  # 6.3 MB > limit? no: 6.27
    rows = (6 * 1024 * 1024 - 4096) // (28 * 28 * 4)
    content = np.full((rows, 28, 28, 1), 0.5, np.float32).tobytes()
    done = threading.Event()
    worst: list[float] = []

    def health() -> None:
        while not done.is_set():
            t = time.perf_counter()
            requests.get(f"{both.url}/v2/health/live", timeout=10).raise_for_status()
            worst.append(time.perf_counter() - t)
            time.sleep(0.01)

    checker = threading.Thread(target=health)
    checker.start()
    try:
        for _ in range(3):
            code, message = grpc_call(both, {"images": tensor(
                [rows, 28, 28, 1], tensor_content=content)})
            assert code == grpc.StatusCode.OK, message
    finally:
        done.set()
        checker.join()
    assert worst and max(worst) < 0.5, max(worst)


def test_claimed_bytes_count_the_shape_not_the_wire() -> None:
    inputs = {"images": tensor([100, 28, 28, 1], float_val=[0.5]),
              "x": tensor([2], types_pb2.DT_STRING, string_val=[b"abc", b"de"])}
    assert grpc_codec.claimed_bytes(inputs) == 100 * 784 * 4 + 5


@pytest.mark.parametrize("dtype,field,value", [
    (types_pb2.DT_HALF, "half_val", [0x1_3C00]),  # wrapped to 0x3C00 = 1.0 before
    (types_pb2.DT_HALF, "half_val", [-1]),
    (types_pb2.DT_UINT8, "int_val", [300]),
    (types_pb2.DT_INT8, "int_val", [-129]),
])
def test_out_of_range_typed_values_are_refused(both: Server, dtype: int, field: str,
                                               value: list[int]) -> None:
    code, message = grpc_call(both, {"images": tensor([1, 28, 28, 1], dtype, **{field: value})})
    assert code == INVALID and "must lie in" in message, message


def test_rest_rows_are_counted_before_arrays_are_built(both: Server) -> None:
    too_many = [0] * 10_001
    for body in ({"instances": too_many}, {"inputs": too_many}):
        r = rest_predict(both, body)
        assert r.status_code == 400 and "at most 10000" in r.json()["error"], r.text
    r = requests.post(f"{both.url}/v2/models/root_mnist/infer", json={"inputs": [
        {"name": "images", "datatype": "FP32", "shape": [20_000, 28, 28, 1], "data": [0.5]}]},
        timeout=30)
    assert r.status_code == 400 and "at most 10000" in r.json()["error"], r.text


# -- 3. image decompression bombs ----------------------------------------------------------------
@pytest.fixture(scope="module")
def bomb() -> bytes:
    return bomb_png()


def test_an_image_bomb_is_refused_from_its_header_on_rest_and_grpc(both: Server,
                                                                   bomb: bytes) -> None:
    assert len(bomb) < 500_000
    r = rest_predict(both, {"signature_name": SERVING_IMAGES,
                            "instances": [{"b64": base64.b64encode(bomb).decode()}]})
    assert r.status_code == 400, r.text
    assert "400,000,000 pixels" in r.json()["error"] and "4,000,000" in r.json()["error"]
    code, message = grpc_call(both, {"image_bytes": tensor([1], types_pb2.DT_STRING,
                                                           string_val=[bomb])}, SERVING_IMAGES)
    assert code == INVALID and "400,000,000 pixels" in message, message
    medium = bomb_png(2100, 2100)  # over the cap, under Pillow's own 2x guard: our check
    r = rest_predict(both, {"signature_name": SERVING_IMAGES,
                            "instances": [{"b64": base64.b64encode(medium).decode()}]})
    assert r.status_code == 400 and "2100 x 2100" in r.json()["error"], r.text
    small = bomb_png(40, 40)  # a normal image still works
    r = rest_predict(both, {"signature_name": SERVING_IMAGES,
                            "instances": [{"b64": base64.b64encode(small).decode()}]})
    assert r.status_code == 200, r.text


# -- 4. decode errors are the client's ----------------------------------------------------------
GARBAGE = b"\xff\xfe\x80\x81garbage\xc3"


def test_garbage_bytes_are_invalid_argument_everywhere(both: Server) -> None:
    b64 = base64.b64encode(GARBAGE).decode()
    for sig, key in ((SERVING_EXAMPLES, "examples"), (SERVING_IMAGES, "image_bytes")):
        r = rest_predict(both, {"signature_name": sig, "instances": [{"b64": b64}]})
        assert r.status_code == 400, r.text
        code, message = grpc_call(both, {key: tensor([1], types_pb2.DT_STRING,
                                                     string_val=[GARBAGE])}, sig)
        assert code == INVALID, (sig, code, message)
    r = rest_predict(both, {"signature_name": SERVING_EXAMPLES, "instances": [{"b64": "%%%"}]})
    assert r.status_code == 400 and "base64" in r.json()["error"], r.text
    r = requests.post(f"{both.url}/v1/models/root_mnist:classify",
                      json={"examples": [{"image": {"b64": b64}}]}, timeout=30)
    assert r.status_code == 400, r.text


SIGNATURES = {SERVING_DEFAULT: ("images", types_pb2.DT_FLOAT),
              SERVING_IMAGES: ("image_bytes", types_pb2.DT_STRING),
              SERVING_EXAMPLES: ("examples", types_pb2.DT_STRING)}
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-300, 300) | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=6) | st.builds(lambda b: {"b64": base64.b64encode(b).decode()},
                                      st.binary(max_size=40)),
    lambda children: st.lists(children, max_size=3), max_leaves=8)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(sig=st.sampled_from(sorted(SIGNATURES)), value=JSONISH, row=st.booleans(),
       raw=st.binary(max_size=60))
def test_no_rest_input_to_any_signature_is_a_5xx(both: Server, sig: str, value: object,
                                                 row: bool, raw: bytes) -> None:
    key = SIGNATURES[sig][0]
    bodies = [{"signature_name": sig, "instances" if row else "inputs": value},
              {"signature_name": sig, "instances": [{"b64": base64.b64encode(raw).decode()}]},
              {"signature_name": sig, "inputs": {key: [value]}}]
    for body in bodies:
        r = rest_predict(both, body)
        assert r.status_code < 500, (body, r.text)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(sig=st.sampled_from(sorted(SIGNATURES)),
       dtype=st.sampled_from([types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_HALF,
                              types_pb2.DT_INT32, types_pb2.DT_UINT8, types_pb2.DT_STRING,
                              types_pb2.DT_INT64, types_pb2.DT_BOOL, types_pb2.DT_INT8]),
       shape=st.lists(st.integers(0, 1 << 20), max_size=5),
       ints=st.lists(st.integers(-(1 << 31), (1 << 31) - 1), max_size=4),
       strings=st.lists(st.binary(max_size=40), max_size=3),
       content=st.binary(max_size=64))
@example(sig=SERVING_EXAMPLES, dtype=types_pb2.DT_STRING, shape=[1], ints=[],
         strings=[GARBAGE], content=b"")  # the probe's case: INTERNAL UnicodeDecodeError before
def test_no_grpc_tensor_to_any_signature_is_internal(both: Server, sig: str, dtype: int,
                                                     shape: list[int], ints: list[int],
                                                     strings: list[bytes],
                                                     content: bytes) -> None:
    key = SIGNATURES[sig][0]
    field = grpc_codec.NUMERIC.get(dtype, (None, "string_val"))[1]
    candidates = [tensor(shape, dtype, tensor_content=content) if content else tensor(shape, dtype),
                  tensor(shape, types_pb2.DT_STRING, string_val=strings)]
    if field in ("int_val", "int64_val", "half_val"):
        candidates.append(tensor(shape, dtype, **{field: ints}))
    elif field in ("float_val", "double_val"):
        candidates.append(tensor(shape, dtype, **{field: [float(i) for i in ints]}))
    for proto in candidates:
        code, message = grpc_call(both, {key: proto}, sig)
        assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), message


def test_serving_predict_refuses_a_bomb_file_with_exit_2(both: Server, tmp_path: Path) -> None:
    """Checked from the header before the file is sent."""
    from click.testing import CliRunner

    from serving import cli as serving_cli

    bomb_file = tmp_path / "7" / "bomb.png"
    bomb_file.parent.mkdir()
    bomb_file.write_bytes(bomb_png(3000, 3000))
    result = CliRunner().invoke(serving_cli.main, ["predict", "root_mnist", str(bomb_file),
                                                   "--url", both.url])
    assert result.exit_code == 2, result.output
    assert "bomb.png" in result.output and "9,000,000 pixels" in result.output
