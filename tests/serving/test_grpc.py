"""TF Serving's gRPC API (issue 13), tested with the official ``tensorflow-serving-api`` stubs,
unchanged, against real ``serving start`` processes serving a registry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving.server import free_port
from tests import datagen
from tests.server_process import wait_ready

ROOT = Path(__file__).resolve().parents[2]
NOT_FOUND, INVALID = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    rest: str
    target: str
    metadata: str
    serving_dir: str
    log: Path

    def stub(self) -> prediction_service_pb2_grpc.PredictionServiceStub:
        return prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(self.target))


def _registry(root: Path, model_dir: str) -> tuple[str, str]:
    from benchmarks.tfx_records import add_pipeline_run
    from registry.api import open_registry

    metadata, serving = str(root / "metadata.sqlite"), str(root / "serving_model")
    add_pipeline_run(metadata, "mnist", model_dir, str(root / "pushed"))
    reg = open_registry(metadata, serving)
    reg.deploy("mnist", label="stable", user="root")
    reg.deploy("mnist", user="root")  # v2 current, v1 stable
    return metadata, serving


@pytest.fixture(scope="module")
def registry_dirs(tmp_path_factory: pytest.TempPathFactory, saved_model: Path) -> tuple[str, str]:
    return _registry(tmp_path_factory.mktemp("grpc_registry"), str(saved_model))


def _start(root: Path, metadata: str, serving_dir: str, *extra: str,
           env_extra: dict[str, str] | None = None) -> Running:
    rest, port = free_port(), free_port()
    log = root / f"server-{port}.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", USER="root",
               PYTHONFAULTHANDLER="1", **(env_extra or {}))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "start", "--source", "registry", "--metadata",
             metadata, "--serving-dir", serving_dir, "--port", str(rest), "--grpc-port",
             str(port), "--poll-s", "0.1", *extra],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    running = Running(proc, f"http://127.0.0.1:{rest}", f"127.0.0.1:{port}", metadata,
                      serving_dir, log)
    wait_ready(running.rest, proc, log=log)  # a process that never comes up is stopped
    return running


def _stop(running: Running) -> None:
    if running.proc.poll() is None:
        running.proc.terminate()
        running.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           registry_dirs: tuple[str, str]) -> Iterator[Running]:
    running = _start(tmp_path_factory.mktemp("grpc"), *registry_dirs)
    yield running
    _stop(running)


def images_tensor(batch: int = 1, value: float = 0.0) -> tensor_pb2.TensorProto:
    array = np.full((batch, 28, 28, 1), value, np.float32)
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_content=array.tobytes(),
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]))


def predict_request(name: str = "root_mnist", version: int | None = None,
                    label: str | None = None, batch: int = 1) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["images"].CopyFrom(images_tensor(batch))
    return request


def code_of(call: object, request: object, **kwargs: object) -> tuple[grpc.StatusCode, str]:
    try:
        call(request, timeout=30, **kwargs)  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def test_the_official_stubs_work_unchanged(server: Running) -> None:
    import tensorflow as tf

    stub = server.stub()
    response = stub.Predict(predict_request(), timeout=30)
    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    assert probabilities.shape == (1, 10) and abs(float(probabilities.sum()) - 1) < 1e-4
    assert (response.model_spec.name, response.model_spec.version.value,
            response.model_spec.signature_name) == ("root_mnist", 2, "serving_default")
    rest = requests.post(f"{server.rest}/v1/models/root_mnist:predict", timeout=30,
                         json={"instances": np.zeros((1, 28, 28, 1)).tolist()}).json()
    np.testing.assert_allclose(probabilities, rest["predictions"], atol=1e-6)

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "root_mnist"
    example = classify.input.example_list.examples.add()
    example.features.feature["image"].int64_list.value.extend([0] * 784)
    result = stub.Classify(classify, timeout=30).result
    assert [c.label for c in result.classifications[0].classes] == [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

    multi = inference_pb2.MultiInferenceRequest()
    multi.tasks.add(method_name="tensorflow/serving/classify").model_spec.name = "root_mnist"
    multi.input.CopyFrom(classify.input)
    [task] = stub.MultiInference(multi, timeout=30).results
    assert len(task.classification_result.classifications[0].classes) == 10

    meta = stub.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=predict_request().model_spec, metadata_field=["signature_def"]), timeout=30)
    defs = get_model_metadata_pb2.SignatureDefMap()
    meta.metadata["signature_def"].Unpack(defs)
    assert {"serving_default", "serving_images", "serving_examples"} <= set(defs.signature_def)
    assert defs.signature_def["serving_default"].inputs["images"].dtype == types_pb2.DT_FLOAT

    status = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(server.target))
    versions = status.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
        model_spec=predict_request().model_spec), timeout=30).model_version_status
    assert {(v.version, get_model_status_pb2.ModelVersionStatus.State.Name(v.state))
            for v in versions} == {(1, "AVAILABLE"), (2, "AVAILABLE")}

    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.target))
    for service in ("", "tensorflow.serving.PredictionService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_versions_and_labels_as_tf_serving_resolves_them(server: Running) -> None:
    stub = server.stub()
    assert stub.Predict(predict_request(version=1), timeout=30).model_spec.version.value == 1
    assert stub.Predict(predict_request(label="stable"), timeout=30).model_spec.version.value == 1
    code, details = code_of(stub.Predict, predict_request("nosuch"))
    assert code == NOT_FOUND and "Servable not found for request: Latest(nosuch)" in details
    code, details = code_of(stub.Predict, predict_request(version=9))
    assert code == NOT_FOUND and "Could not find version 9 of model root_mnist" in details
    code, details = code_of(stub.Predict, predict_request(label="canary"))
    assert code == INVALID and "Unrecognized servable version label: canary" in details


def _bad(request: predict_pb2.PredictRequest, change: str) -> predict_pb2.PredictRequest:
    tensor = request.inputs["images"]
    if change == "short content":
        tensor.tensor_content = tensor.tensor_content[:-4]
    elif change == "nan":
        tensor.tensor_content = np.full((1, 28, 28, 1), np.nan, np.float32).tobytes()
    elif change == "huge shape":
        del tensor.tensor_shape.dim[:]
        tensor.tensor_shape.dim.add(size=2**40)
        tensor.tensor_shape.dim.add(size=2**40)
    elif change == "negative dim":
        tensor.tensor_shape.dim[0].size = -3
    elif change == "strings":
        request.inputs["images"].CopyFrom(tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, string_val=[b"x"],
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)])))
    elif change == "wrong shape":
        tensor.tensor_shape.dim[1].size = 14
        tensor.tensor_shape.dim[2].size = 56
    elif change == "0-255 pixels":
        request.inputs["images"].CopyFrom(images_tensor(1, value=255.0))
    elif change == "unknown input":
        request.inputs["pixels"].CopyFrom(images_tensor(1))
    elif change == "unknown signature":
        request.model_spec.signature_name = "serving_nope"
    return request


@pytest.mark.parametrize("change, words", [
    ("short content", "tensor_content holds"), ("nan", "NaN"), ("huge shape", "elements"),
    ("negative dim", "negative"), ("strings", "DT_FLOAT"), ("wrong shape", "shape"),
    ("0-255 pixels", "divide by 255"), ("unknown input", "input tensor alias not found"),
    ("unknown signature", 'Serving signature name: "serving_nope" not found'),
])
def test_malformed_requests_are_invalid_argument(server: Running, change: str,
                                                 words: str) -> None:
    code, details = code_of(server.stub().Predict, _bad(predict_request(), change))
    assert code == INVALID and words in details, details


def test_regress_is_refused_where_the_signature_does_not_allow_it(server: Running) -> None:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "root_mnist"
    code, details = code_of(server.stub().Regress, request)
    assert code == INVALID and "regression" in details


def test_hot_reload_under_load_fails_no_call(server: Running) -> None:
    from registry.api import open_registry

    stub = server.stub()
    versions: list[int] = []
    failures: list[str] = []
    done = threading.Event()

    def load() -> None:
        while not done.is_set():
            try:
                versions.append(stub.Predict(predict_request(), timeout=30)
                                .model_spec.version.value)
            except grpc.RpcError as exc:
                failures.append(f"{exc.code()}: {exc.details()}")

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        open_registry(server.metadata, server.serving_dir).deploy("mnist", user="root")  # v3
        deadline = time.monotonic() + 60
        while 3 not in versions[-20:] and time.monotonic() < deadline:
            time.sleep(0.1)  # polling until the new version answers
        time.sleep(0.5)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=60)
    assert not failures, failures[:5]
    assert 2 in versions and versions[-1] == 3 and len(versions) > 20


def test_serving_predict_grpc(server: Running, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from serving.cli import main as serving

    folder = datagen.write_png_folder(tmp_path / "digits", n_per_class=1)
    result = CliRunner().invoke(serving, ["predict", "root_mnist", str(folder / "3"),
                                          str(folder / "7"), "--grpc", server.target,
                                          "--output", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["version"] == "3" or report["version"] == "2"
    assert [p["tag"] for p in report["predictions"]] == ["three", "seven"]
    rest = CliRunner().invoke(serving, ["predict", "root_mnist", str(folder / "3"),
                                        str(folder / "7"), "--url", server.rest,
                                        "--output", "json"])
    np.testing.assert_allclose([p["prediction"] for p in report["predictions"]],
                               [p["prediction"] for p in json.loads(rest.output)["predictions"]],
                               atol=1e-5)


def test_auth_message_size_and_drain(tmp_path: Path, registry_dirs: tuple[str, str]) -> None:
    running = _start(tmp_path, *registry_dirs, "--max-body-mb", "8", "--grace-s", "30",
                     env_extra={"SERVING_AUTH_TOKEN": "s3cret",
                                "SERVING_TEST_GRPC_DELAY_S": "1.5"})  # calls stay in flight
    try:
        stub = running.stub()
        code, details = code_of(stub.Predict, predict_request())
        assert code == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in details
        bearer = (("authorization", "Bearer s3cret"),)
        assert code_of(stub.Predict, predict_request(), metadata=bearer)[0] == grpc.StatusCode.OK
        code, _ = code_of(stub.Predict, predict_request(batch=3000), metadata=bearer)  # 9.4 MB
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(running.target))
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING
        # SIGTERM while a call is in flight: it finishes; calls after it are refused.
        results: list[grpc.StatusCode] = []

        def slow_call() -> None:
            results.append(code_of(stub.Predict, predict_request(batch=100),
                                   metadata=bearer)[0])

        calls = [threading.Thread(target=slow_call) for _ in range(3)]
        for call in calls:
            call.start()

        def in_flight() -> float:  # gRPC calls count in the same gauge; /metrics itself is one
            text = requests.get(f"{running.rest}/metrics", timeout=5,
                                headers={"Authorization": "Bearer s3cret"}).text
            line = next(x for x in text.splitlines()
                        if x.startswith("serving_requests_in_flight "))
            return float(line.split()[1]) - 1

        deadline = time.monotonic() + 30
        while in_flight() < 3 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling until all three calls are being handled
        assert in_flight() == 3
        running.proc.send_signal(signal.SIGTERM)
        for call in calls:
            call.join(timeout=60)
        time.sleep(0.3)
        after, _ = code_of(stub.Predict, predict_request(), metadata=bearer)
        assert after == grpc.StatusCode.UNAVAILABLE
        assert results and all(r == grpc.StatusCode.OK for r in results), results
        assert running.proc.wait(timeout=60) == 0
    finally:
        _stop(running)


def test_a_taken_grpc_port_fails_when_asked_for_and_warns_by_default(
        server: Running, tmp_path: Path) -> None:
    import socket

    busy = server.target.split(":")[1]
    done = subprocess.run(
        [sys.executable, "-m", "serving", "start", "--source", "registry", "--metadata",
         server.metadata, "--serving-dir", server.serving_dir, "--port", str(free_port()),
         "--grpc-port", busy], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode != 0 and "cannot listen for gRPC" in done.stderr, done.stderr[-2000:]
    holder = socket.socket()
    try:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            holder.bind(("127.0.0.1", 8500))
            holder.listen()
        except OSError:
            pass  # something else holds the default port already: the same situation
        env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
        rest = free_port()
        log = tmp_path / "default.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "serving", "start", "--source", "registry",
                 "--metadata", server.metadata, "--serving-dir", server.serving_dir, "--port",
                 str(rest)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_ready(f"http://127.0.0.1:{rest}", proc, log=log)
            assert "serving REST only" in log.read_text()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    finally:
        holder.close()


def test_the_readme_grpc_client_as_written(server: Running, tmp_path: Path) -> None:
    """The README's gRPC snippet, verbatim apart from the address and the file's folder."""
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(import grpc\n.*?)```", text, re.S).group(1)
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 12
    image = next((datagen.write_png_folder(tmp_path / "digits", n_per_class=1) / "3").glob("*.png"))
    (tmp_path / "digit.png").write_bytes(image.read_bytes())
    done = subprocess.run([sys.executable, "-c", snippet.replace("localhost:8500", server.target)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-2000:]
    digit, probability = done.stdout.split()
    assert 0 <= int(digit) <= 9 and 0 < float(probability) <= 1


def test_outputs_use_the_typed_fields_as_tf_serving_does(server: Running) -> None:
    response = server.stub().Predict(predict_request(batch=2), timeout=30)
    probabilities = response.outputs["probabilities"]
    assert not probabilities.tensor_content and len(probabilities.float_val) == 20
    assert [d.size for d in probabilities.tensor_shape.dim] == [2, 10]


def test_an_output_filter_is_checked_before_the_model_runs(server: Running) -> None:
    """``output_filter`` picks the outputs; one the signature lacks is INVALID_ARGUMENT in TF
    Serving's words, refused before the model runs (so the request is not in /metrics' count
    of answered images either)."""
    def answered_images() -> float:
        text = requests.get(f"{server.rest}/metrics", timeout=10).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("serving_prediction_confidence_count{"))

    request = predict_request(batch=2)
    request.output_filter.append("probabilities")
    response = server.stub().Predict(request, timeout=30)
    assert list(response.outputs) == ["probabilities"]
    before = answered_images()
    request.output_filter.append("no_such_output")
    code, details = code_of(server.stub().Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("output tensor alias not found in signature: no_such_output. "
                              "Outputs expected to be in the set {"), details
    assert answered_images() == before
