"""TF Serving REST, KServe v2, SageMaker and /metrics against a real SavedModel on loopback."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess

import numpy as np
import pytest
import requests
from PIL import Image

from serving.app import ServerConfig

from .conftest import Server, start_server


def image_list(value: float = 0.0) -> list:
    return [[[value] for _ in range(28)] for _ in range(28)]


def png_bytes(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def assert_probabilities(rows: list, n: int) -> None:
    assert len(rows) == n
    for row in rows:
        assert len(row) == 10
        assert abs(sum(row) - 1.0) < 1e-4


def assert_healthy(url: str) -> None:
    assert requests.get(f"{url}/v2/health/live", timeout=5).status_code == 200
    r = requests.post(f"{url}/v1/models/root_mnist:predict",
                      json={"instances": [image_list()]}, timeout=10)
    assert r.status_code == 200, r.text


def test_status_and_case_insensitive_paths(server: Server) -> None:
    want = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}
    for path in ("/v1/models/root_mnist", "/V1/MODELS/root_mnist/Versions/1",
                 "/v1/models/root_mnist/labels/stable"):
        r = requests.get(server.url + path, timeout=5)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
        assert r.json() == want


def test_metadata_is_signature_def_map(server: Server) -> None:
    r = requests.get(f"{server.url}/v1/models/root_mnist/versions/1/metadata", timeout=5)
    body = r.json()
    assert body["model_spec"] == {"name": "root_mnist", "signature_name": "", "version": "1"}
    sigs = body["metadata"]["signature_def"]["signature_def"]
    default = sigs["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    images = default["inputs"]["images"]
    assert images["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in images["tensor_shape"]["dim"]] == ["-1", "28", "28", "1"]
    assert sigs["serving_images"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert "serving_examples" in sigs


def test_seed_001_curl_call_works_as_written(server: Server) -> None:
    """The IRIS docs' call: signature_name + instances of [28][28][1] floats, to /versions/N."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    data = json.dumps({"signature_name": "serving_default", "instances": [image_list(0.5)]})
    out = subprocess.run(
        ["curl", "-s", "-d", data, "-X", "POST",
         f"{server.url}/v1/models/root_mnist/versions/1:predict"],
        capture_output=True, text=True, timeout=30, check=True).stdout
    assert_probabilities(json.loads(out)["predictions"], 1)


def test_requests_png_base64_snippet(server: Server, tmp_path) -> None:
    """The README's Python client, verbatim apart from the URL."""
    path = tmp_path / "digit.png"
    path.write_bytes(png_bytes())
    url = f"{server.url}/v1/models/root_mnist:predict"
    # --- snippet (docs/serving.md) ---
    with open(path, "rb") as f:
        encoded = base64.b64encode(f.read()).decode("utf-8")
    body = {"signature_name": "serving_images", "instances": [{"b64": encoded}]}
    response = requests.post(url, json=body, timeout=10)
    response.raise_for_status()
    probabilities = response.json()["predictions"][0]
    digit = max(range(10), key=probabilities.__getitem__)
    # --- end ---
    assert 0 <= digit <= 9 and abs(sum(probabilities) - 1) < 1e-4


def test_row_columnar_and_signatures_agree(server: Server) -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (3, 28, 28), dtype=np.int64)
    floats = (pixels / 255.0).astype(np.float32)[..., None].tolist()
    u = f"{server.url}/v1/models/root_mnist:predict"
    row = requests.post(u, json={"instances": floats}, timeout=10).json()["predictions"]
    col = requests.post(u, json={"inputs": floats}, timeout=10).json()["outputs"]
    named = requests.post(u, json={"instances": [{"images": x} for x in floats]},
                          timeout=10).json()["predictions"]
    assert_probabilities(row, 3)
    np.testing.assert_allclose(row, col, atol=1e-6)
    np.testing.assert_allclose(row, named, atol=1e-6)
    pngs = []
    for p in pixels:
        buf = io.BytesIO()
        Image.fromarray(p.astype(np.uint8)).save(buf, format="PNG")
        pngs.append({"b64": base64.b64encode(buf.getvalue()).decode()})
    via_png = requests.post(u, json={"signature_name": "serving_images", "instances": pngs},
                            timeout=10).json()["predictions"]
    np.testing.assert_allclose(row, via_png, atol=1e-4)
    classify = requests.post(f"{server.url}/v1/models/root_mnist:classify",
                             json={"examples": [{"image": p.reshape(-1).tolist()} for p in pixels]},
                             timeout=10).json()["results"]
    assert [name for name, _ in classify[0]] == ["zero", "one", "two", "three", "four", "five",
                                                 "six", "seven", "eight", "nine"]
    np.testing.assert_allclose([[s for _, s in r] for r in classify], row, atol=1e-4)


BAD_REQUESTS = [
    ("malformed JSON", b'{"instances": [', 400, "JSON Parse error"),
    ("not an object", b"[1, 2]", 400, "JSON object"),
    ("empty body", b"", 400, "JSON Parse error"),
    ("wrong shape", json.dumps({"instances": [[1.0, 2.0]]}).encode(), 400, "shape"),
    ("wrong dtype", json.dumps({"instances": [[[["a"]] * 28] * 28]}).encode(), 400, "DT_FLOAT"),
    ("ragged", json.dumps({"instances": [image_list(), [[0.0]]]}).encode(), 400, "images"),
    ("NaN", b'{"instances": [' + json.dumps(image_list()).replace("0.0", "NaN", 1).encode() + b"]}",
     400, "NaN"),
    ("Infinity", b'{"inputs": [' + json.dumps(image_list()).replace("0.0", "-Infinity", 1).encode()
     + b"]}", 400, "NaN or Infinity"),
    ("b64 garbage", json.dumps({"signature_name": "serving_images",
                                "instances": [{"b64": "not base64!!"}]}).encode(), 400, "base64"),
    ("b64 not an image", json.dumps({"signature_name": "serving_images",
                                     "instances": [{"b64": "aGVsbG8="}]}).encode(), 400, "PNG"),
    ("b64 on a float input", json.dumps({"instances": [{"b64": "aGVsbG8="}]}).encode(), 400,
     "DT_FLOAT"),
    ("empty instances", b'{"instances": []}', 400, "empty"),
    ("empty inputs", b'{"inputs": []}', 400, "empty"),
    ("both instances and inputs", json.dumps({"instances": [image_list()],
                                              "inputs": [image_list()]}).encode(), 400, "not both"),
    ("neither", b'{"signature_name": "serving_default"}', 400, "instances"),
    ("unknown signature", json.dumps({"signature_name": "nope", "instances": [image_list()]}
                                     ).encode(), 400, "nope"),
    ("wrong instance keys", json.dumps({"instances": [{"pixels": image_list()}]}).encode(), 400,
     "pixels"),
]


@pytest.mark.parametrize("what,body,status,fragment", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_4xx_json_and_server_stays_healthy(server: Server, what: str, body: bytes,
                                                            status: int, fragment: str) -> None:
    r = requests.post(f"{server.url}/v1/models/root_mnist:predict", data=body,
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert set(r.json()) == {"error"} and fragment in r.json()["error"], r.json()
    assert_healthy(server.url)


@pytest.mark.parametrize("path,status,fragment", [
    ("/v1/models/nope:predict", 404, "Servable not found for request: Latest(nope)"),
    ("/v1/models/root_mnist/versions/9:predict", 404, "Could not find version 9 of model root_mnist"),
    ("/v1/models/root_mnist/labels/canary:predict", 400, "Unrecognized servable version label: canary"),
    ("/v1/models/root_mnist/versions/1/labels/stable:predict", 400, "not both"),
    ("/v1/models/root_mnist/versions/abc:predict", 400, "Malformed request"),
    ("/v1/models/root_mnist:regress", 400, "regression"),
    ("/nothing/here", 404, "no route"),
])
def test_unknown_model_version_label_and_paths(server: Server, path: str, status: int,
                                               fragment: str) -> None:
    r = requests.post(server.url + path, json={"instances": [image_list()]}, timeout=10)
    assert r.status_code == status and fragment in r.json()["error"], r.text
    assert_healthy(server.url)


def test_wrong_method_is_405_json(server: Server) -> None:
    r = requests.get(f"{server.url}/v1/models/root_mnist:predict", timeout=5)
    assert r.status_code in (400, 405) and "error" in r.json()
    r = requests.post(f"{server.url}/v2/health/live", timeout=5)
    assert r.status_code == 405 and r.headers["Allow"] == "GET"


def test_oversized_body_is_413_json(source) -> None:
    source.deploy("root_mnist", 1)
    srv = start_server(source, ServerConfig(port=0, max_body_bytes=200_000))
    try:
        big = json.dumps({"instances": [image_list(0.123456789)] * 20}).encode()
        assert len(big) > 200_000
        r = requests.post(f"{srv.url}/v1/models/root_mnist:predict", data=big, timeout=10)
        assert r.status_code == 413 and "limit" in r.json()["error"]

        def chunks():  # no Content-Length: aiohttp's own limit must still answer in our shape
            for i in range(0, len(big), 65536):
                yield big[i:i + 65536]

        r = requests.post(f"{srv.url}/v1/models/root_mnist:predict", data=chunks(), timeout=10)
        assert r.status_code == 413 and "limit" in r.json()["error"]
        assert_healthy(srv.url)
    finally:
        srv.http.stop()
        srv.runtime.close()


def test_slow_request_times_out_with_504(source) -> None:
    source.deploy("root_mnist", 1)
    srv = start_server(source, ServerConfig(port=0, timeout_s=0.001))
    try:
        body = json.dumps({"instances": [image_list(0.5)] * 400})
        r = requests.post(f"{srv.url}/v1/models/root_mnist:predict", data=body, timeout=30)
        assert r.status_code == 504 and "deadline" in r.json()["error"]
    finally:
        srv.http.stop()
        srv.runtime.close()


def test_bearer_token_on_everything_but_health(source) -> None:
    source.deploy("root_mnist", 1)
    srv = start_server(source, ServerConfig(port=0, auth_token="s3cret"))
    try:
        u = srv.url
        for path in ("/v2/health/live", "/v2/health/ready", "/ping"):
            assert requests.get(u + path, timeout=5).status_code == 200
        for path in ("/v1/models/root_mnist", "/metrics", "/openapi.json", "/v2/models/root_mnist"):
            r = requests.get(u + path, timeout=5)
            assert r.status_code == 401 and "bearer" in r.json()["error"].lower()
        r = requests.get(u + "/v1/models/root_mnist", headers={"Authorization": "Bearer wrong"},
                         timeout=5)
        assert r.status_code == 401
        r = requests.post(u + "/v1/models/root_mnist:predict", json={"instances": [image_list()]},
                          headers={"Authorization": "Bearer s3cret"}, timeout=10)
        assert r.status_code == 200
    finally:
        srv.http.stop()
        srv.runtime.close()


def test_kserve_v2(server: Server) -> None:
    u = server.url
    assert requests.get(f"{u}/v2/health/live", timeout=5).json() == {"live": True}
    assert requests.get(f"{u}/v2/health/ready", timeout=5).status_code == 200
    assert requests.get(f"{u}/v2/models/root_mnist/ready", timeout=5).status_code == 200
    assert requests.get(f"{u}/v2/models/root_mnist/versions/1/ready", timeout=5).status_code == 200
    assert requests.get(f"{u}/v2/models/nope/ready", timeout=5).status_code == 404
    meta = requests.get(f"{u}/v2/models/root_mnist", timeout=5).json()
    assert meta == {"name": "root_mnist", "versions": ["1"], "platform": "tensorflow_savedmodel",
                    "inputs": [{"name": "images", "datatype": "FP32", "shape": [-1, 28, 28, 1]}],
                    "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]}
    body = {"id": "r1", "inputs": [{"name": "images", "shape": [2, 28, 28, 1], "datatype": "FP32",
                                    "data": [0.25] * (2 * 784)}]}
    r = requests.post(f"{u}/v2/models/root_mnist/versions/1/infer", json=body, timeout=10).json()
    assert r["model_name"] == "root_mnist" and r["model_version"] == "1" and r["id"] == "r1"
    out = r["outputs"][0]
    assert out["name"] == "probabilities" and out["shape"] == [2, 10] and out["datatype"] == "FP32"
    assert len(out["data"]) == 20
    png = base64.b64encode(png_bytes()).decode()
    r = requests.post(f"{u}/v2/models/root_mnist/infer", json={"inputs": [
        {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [{"b64": png}]}]},
        timeout=10)
    assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [1, 10]
    bad = dict(body, inputs=[dict(body["inputs"][0], shape=[3, 28, 28, 1])])
    r = requests.post(f"{u}/v2/models/root_mnist/infer", json=bad, timeout=10)
    assert r.status_code == 400 and "shape" in r.json()["error"]


def test_sagemaker_ping_and_invocations(server: Server) -> None:
    u = server.url
    assert requests.get(f"{u}/ping", timeout=2).status_code == 200
    body = {"signature_name": "serving_default", "instances": [image_list()]}
    r = requests.post(f"{u}/invocations", json=body, timeout=10)
    assert_probabilities(r.json()["predictions"], 1)
    r = requests.post(f"{u}/invocations", json=body, timeout=10, headers={
        "X-Amzn-SageMaker-Custom-Attributes": "tfs-model-name=root_mnist,tfs-model-version=1"})
    assert_probabilities(r.json()["predictions"], 1)
    r = requests.post(f"{u}/invocations", json=body, timeout=10, headers={
        "X-Amzn-SageMaker-Custom-Attributes": "tfs-model-name=other"})
    assert r.status_code == 404
    png = base64.b64encode(png_bytes()).decode()
    r = requests.post(f"{u}/invocations", timeout=10, json={
        "signature_name": "serving_images", "instances": [{"b64": png}]})
    assert_probabilities(r.json()["predictions"], 1)
    csv_rows = "\n".join(",".join(["0.5"] * 784) for _ in range(2))
    r = requests.post(f"{u}/invocations", data=csv_rows, headers={"Content-Type": "text/csv"},
                      timeout=10)
    assert_probabilities(r.json()["predictions"], 2)


def test_metrics_per_model_and_version(server: Server) -> None:
    u = server.url
    requests.post(f"{u}/v1/models/root_mnist:predict", json={"instances": [image_list()]}, timeout=10)
    requests.post(f"{u}/v1/models/root_mnist:predict", data=b"{", timeout=10)
    text = requests.get(f"{u}/metrics", timeout=5).text
    assert ('serving_requests_total{api="tfs_predict",code="200",model="root_mnist",version="1"}'
            in text)
    assert ('serving_request_errors_total{api="tfs_predict",code="400",model="root_mnist",'
            'version="1"}' in text)
    assert 'serving_request_latency_seconds_bucket{api="tfs_predict"' in text
    assert 'serving_model_version_available{model="root_mnist",version="1"} 1.0' in text


def test_openapi_document_lists_the_routes(server: Server) -> None:
    doc = requests.get(f"{server.url}/openapi.json", timeout=5).json()
    assert doc["openapi"].startswith("3.")
    for path in ("/v1/models/{name}:predict", "/v2/models/{name}/infer", "/invocations", "/ping"):
        assert path in doc["paths"], path
