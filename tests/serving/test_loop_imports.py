"""The server's event loop imports no module once the model loader thread runs.

Two threads importing at once can deadlock on Python's module locks: a CI run hung a server in
LOADING while its loop imported Pillow and the loader thread TensorFlow (both reach
xml.parsers.expat). ``serving.server.import_before_loading`` imports on the main thread, before
the loader starts, what the loop would otherwise import lazily. This runs a real ``serving
start`` with an import recorder and sends it one request of every kind.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.grpc_codec import to_proto
from serving.server import free_port
from tests.server_process import wait_ready

ROOT = Path(__file__).resolve().parents[2]
NAME = "root_mnist"

# Runs `serving start`; writes each module first imported on the main thread (the event loop's)
# while the model manager's thread is alive.
RECORDER = """
import sys
from tests.loop_imports import MainThreadImports, manager_thread_runs

MainThreadImports(armed=manager_thread_runs, out=sys.argv[1]).install()
from serving.cli import main
main(sys.argv[2:])
"""


def _image(kind: str) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("L" if kind == "PNG" else "RGB", (28, 28)).save(out, kind)
    return out.getvalue()


def _rest_requests(url: str) -> list[requests.Response]:
    pixels = np.zeros((28, 28, 1)).tolist()
    model = f"{url}/v1/models/{NAME}"
    answers = [requests.post(f"{model}:predict", json={"instances": [pixels]}, timeout=30),
               requests.post(f"{model}:predict", json={"inputs": [pixels]}, timeout=30),
               requests.post(f"{model}:predict", json={  # not a version: 1 may be unloaded
                   "signature_name": "serving_default", "instances": [pixels]}, timeout=30)]
    for image in (_image("PNG"), _image("JPEG"), _image("WEBP"), b"these bytes are no image"):
        answers.append(requests.post(f"{model}:predict", json={
            "signature_name": "serving_images",
            "instances": [{"b64": base64.b64encode(image).decode()}]}, timeout=30))
    answers += [
        requests.post(f"{model}:classify", json={"examples": [{}]}, timeout=30),
        requests.get(model, timeout=30), requests.get(f"{model}/metadata", timeout=30),
        requests.get(f"{url}/v2/models/{NAME}", timeout=30),
        requests.post(f"{url}/v2/models/{NAME}/infer", json={"inputs": [{
            "name": "images", "shape": [1, 28, 28, 1], "datatype": "FP32",
            "data": [0.0] * 784}]}, timeout=30),
        requests.post(f"{url}/invocations", json={"instances": [pixels]}, timeout=30),
        requests.post(f"{url}/invocations", data=",".join(["0.5"] * 784),
                      headers={"Content-Type": "text/csv"}, timeout=30),
        requests.get(f"{url}/metrics", timeout=30), requests.get(f"{url}/openapi.json", timeout=30),
        requests.get(f"{url}/ping", timeout=30),
        requests.post(f"{model}:predict", data=b"{", timeout=30),
        requests.post(f"{url}/v1/models/nope:predict", json={"instances": [pixels]}, timeout=30),
    ]
    return answers


def _predict(name: str) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["images"].CopyFrom(to_proto(np.zeros((1, 28, 28, 1), np.float32)))
    return request


def _grpc_requests(target: str) -> list[grpc.StatusCode]:
    codes = []
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        metadata = get_model_metadata_pb2.GetModelMetadataRequest()
        metadata.model_spec.name = NAME
        metadata.metadata_field.append("signature_def")
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = NAME
        for call, request in [(stub.Predict, _predict(NAME)),
                              (stub.Predict, _predict("nope")),
                              (stub.GetModelMetadata, metadata),
                              (model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus,
                               status)]:
            try:
                call(request, timeout=30)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
    return codes


@pytest.mark.slow
def test_the_event_loop_imports_nothing_once_models_load(tmp_path: Path,
                                                         saved_model: Path) -> None:
    serving_dir = tmp_path / "serving_model"
    shutil.copytree(saved_model, serving_dir / NAME / "1")
    imported = tmp_path / "imported.txt"
    rest, port = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", RECORDER, str(imported), "start", "--source", "directory",
             "--serving-dir", str(serving_dir), "--port", str(rest), "--grpc-port", str(port),
             "--poll-s", "0.1"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{rest}"
    try:
        wait_ready(url, proc, log=tmp_path / "server.log")
        # version 2 loads on the manager's thread while the requests are answered on the loop
        shutil.copytree(saved_model, serving_dir / NAME / "2")
        statuses = [r.status_code for r in _rest_requests(url)]
        codes = _grpc_requests(f"127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert statuses == [200] * 6 + [400, 400] + [200] * 9 + [400, 404], str(statuses)
    assert codes == [grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.OK,
                     grpc.StatusCode.OK], codes
    on_loop = imported.read_text().split() if imported.exists() else []
    assert on_loop == [], f"imported on the event loop after the loader started: {on_loop}"
