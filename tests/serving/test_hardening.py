"""Issue 10 hardening: bounded metrics, 4xx (never 500) for hostile bodies, slow clients."""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.app import MAX_JSON_DEPTH, json_depth
from serving.metrics import Metrics

from .conftest import Server


def image_list(value: float = 0.0) -> list:
    return [[[value] for _ in range(28)] for _ in range(28)]


def metric_label_values(text: str, label: str) -> set[str]:
    return set(re.findall(rf'{label}="([^"]*)"', text))


# -- 1. metrics ---------------------------------------------------------------------------------
def test_random_model_names_do_not_grow_metrics(server: Server) -> None:
    """5,000 requests naming random models (every route that takes a name) add one ``unknown``
    series, not 5,000; /metrics stays small and a health check is answered while it renders."""
    u = server.url

    def hit(i: int, session: requests.Session) -> int:
        name = uuid.uuid4().hex
        kind = i % 5
        if kind == 0:
            r = session.get(f"{u}/v1/models/{name}", timeout=10)
        elif kind == 1:
            r = session.post(f"{u}/v1/models/{name}:predict", data=b"{}", timeout=10)
        elif kind == 2:
            r = session.get(f"{u}/v2/models/{name}/versions/{i}/ready", timeout=10)
        elif kind == 3:
            r = session.post(f"{u}/invocations", data=b"{}", timeout=10, headers={
                "X-Amzn-SageMaker-Custom-Attributes": f"tfs-model-name={name}"})
        else:  # a real model, a version that does not exist
            r = session.get(f"{u}/v1/models/root_mnist/versions/{1000 + i}/metadata", timeout=10)
        return r.status_code

    def worker(start: int) -> list[int]:
        with requests.Session() as session:
            return [hit(i, session) for i in range(start, 5000, 4)]

    with ThreadPoolExecutor(4) as pool:
        codes = [c for chunk in pool.map(worker, range(4)) for c in chunk]
    assert len(codes) == 5000 and all(400 <= c < 500 for c in codes), set(codes)
    requests.post(f"{u}/v1/models/root_mnist:predict", json={"instances": [image_list()]},
                  timeout=10).raise_for_status()

    health: list[int] = []
    rendering = threading.Event()

    def check_health() -> None:
        rendering.wait(5)
        health.append(requests.get(f"{u}/v2/health/live", timeout=5).status_code)

    checker = threading.Thread(target=check_health)
    checker.start()
    rendering.set()
    r = requests.get(f"{u}/metrics", timeout=30)
    checker.join()
    assert health == [200]
    assert r.status_code == 200 and len(r.content) < 100 * 1024, len(r.content)
    assert metric_label_values(r.text, "model") <= {"root_mnist", "unknown", ""}
    assert metric_label_values(r.text, "version") <= {"1", ""}
    assert 'model="unknown"' in r.text
    assert ('serving_requests_total{api="tfs_predict",code="200",model="root_mnist",version="1"}'
            in r.text)


def test_metrics_cap_folds_extra_label_sets_into_unknown() -> None:
    metrics = Metrics(max_label_sets=3)
    for i in range(50):
        metrics.observe(f"m{i}", "1", "tfs_predict", 200, 0.01)
        metrics.on_batch(f"m{i}", 1, "serving_default", 4)
    text = metrics.render().decode()
    assert metric_label_values(text, "model") == {"m0", "m1", "m2", "unknown"}


# -- 2. 4xx, not 500 ----------------------------------------------------------------------------
def deep(depth: int) -> bytes:
    return b'{"instances": ' + b"[" * depth + b"0" + b"]" * depth + b"}"


def test_json_depth_measures_outside_strings() -> None:
    assert json_depth(b"[" * 2000 + b"]" * 2000) == 2000
    tricky = json.dumps({"s": "]]]]\\\"[[[" * 100, "t": [[[[1]]]]}).encode()
    assert json_depth(tricky) == 5
    assert json_depth(json.dumps({"instances": [image_list()] * 50}).encode()) == 5


@pytest.mark.parametrize("path", ["/v1/models/root_mnist:predict", "/v1/models/root_mnist:classify",
                                  "/v2/models/root_mnist/infer", "/invocations"])
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 2000, 100_000])
def test_deeply_nested_json_is_400_without_traceback(server: Server, path: str,
                                                     depth: int) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("serving").addHandler(handler)
    try:
        r = requests.post(server.url + path, data=deep(depth), timeout=30,
                          headers={"Content-Type": "application/json"})
    finally:
        logging.getLogger("serving").removeHandler(handler)
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"error"} and "nested" in r.json()["error"]
    assert not [rec for rec in records if rec.exc_info], "a traceback was logged"


def test_jsonlines_deep_line_is_400(server: Server) -> None:
    r = requests.post(f"{server.url}/invocations", data=b"[0]\n" + b"[" * 3000 + b"]" * 3000,
                      headers={"Content-Type": "application/jsonlines"}, timeout=30)
    assert r.status_code == 400 and "nested" in r.json()["error"], r.text


def test_nesting_under_the_limit_is_still_parsed(server: Server) -> None:
    body = json.dumps({"instances": [image_list()], "extra": [[[[[[[[[[1]]]]]]]]]]}).encode()
    r = requests.post(f"{server.url}/v1/models/root_mnist:predict", data=body, timeout=10)
    assert r.status_code == 200, r.text


def v2_body(shape: list, data: list | None = None) -> dict:
    return {"inputs": [{"name": "images", "shape": shape, "datatype": "FP32",
                        "data": data if data is not None else [0.0] * 784}]}


@pytest.mark.parametrize("shape,fragment", [
    ([2**32, 2**32, 1, 1], "2^63-1"),
    ([2**63, 1, 1, 1], "2^63-1"),
    ([0, 2**70, 1, 1], "shape"),  # orjson reads 2**70 as a float
    ([2**62, 2**62, 2**62, 2**62], "2^63-1"),
    ([2**32, 2**32, 2**32, 0], "2^63-1"),  # numpy refuses such dims even with a 0
    ([1, 28, 28, 2], "needs 1568"),
    ([1, 28, 28], None),
    ([1] * 40, "dimensions"),
])
def test_kserve_shape_overflow_or_mismatch_is_400(server: Server, shape: list,
                                                  fragment: str | None) -> None:
    r = requests.post(f"{server.url}/v2/models/root_mnist/infer", json=v2_body(shape), timeout=10)
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"error"}
    if fragment:
        assert fragment in r.json()["error"], r.json()


def test_kserve_right_shape_still_works(server: Server) -> None:
    r = requests.post(f"{server.url}/v2/models/root_mnist/infer", json=v2_body([1, 28, 28, 1]),
                      timeout=10)
    assert r.status_code == 200, r.text


JSON_LEAF = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
             | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6))
JSON_ANY = st.recursive(JSON_LEAF, lambda c: st.lists(c, max_size=4)
                        | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=20)
SHAPES = st.lists(st.integers(-3, 2**64) | st.sampled_from([0, 1, 28, 784, 2**31, 2**63 - 1]),
                  max_size=6)
V2_TENSOR = st.fixed_dictionaries(
    {"name": st.sampled_from(["image", "images", "examples", "x"]) | st.text(max_size=4)},
    optional={"shape": SHAPES | JSON_ANY,
              "datatype": st.sampled_from(["FP32", "BYTES", "INT64", "BOOL", "FP16"]) | JSON_ANY,
              "data": st.lists(st.floats(width=32) | st.integers(-5, 300), max_size=8)
              | JSON_ANY | st.lists(st.fixed_dictionaries({"b64": st.text(max_size=8)}),
                                    max_size=3)})
BODIES = st.one_of(
    JSON_ANY.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"inputs": st.lists(V2_TENSOR, max_size=3) | JSON_ANY},
                          optional={"outputs": JSON_ANY, "parameters": JSON_ANY,
                                    "id": JSON_ANY}).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({}, optional={
        "instances": st.lists(JSON_ANY, max_size=3) | JSON_ANY,
        "inputs": JSON_ANY, "signature_name": st.sampled_from(
            ["serving_default", "serving_images", "serving_examples"]) | JSON_ANY,
        "examples": st.lists(st.dictionaries(st.text(max_size=4), JSON_ANY, max_size=3),
                             max_size=3) | JSON_ANY,
        "context": JSON_ANY}).map(lambda v: json.dumps(v).encode()),
    st.integers(1, 400).map(lambda d: b"[" * d + b"]" * d),
    st.binary(max_size=64),
)
ROUTES = ["/v1/models/root_mnist:predict", "/v1/models/root_mnist:classify",
          "/v1/models/root_mnist/versions/1:predict", "/v2/models/root_mnist/infer",
          "/invocations"]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(route=st.sampled_from(ROUTES), body=BODIES,
       content_type=st.sampled_from(["application/json", "text/csv", "application/jsonlines"]))
def test_malformed_bodies_never_get_5xx(server: Server, route: str, body: bytes,
                                        content_type: str) -> None:
    r = requests.post(server.url + route, data=body, timeout=30,
                      headers={"Content-Type": content_type})
    assert r.status_code < 500, (route, body[:200], r.text)
    if r.status_code >= 400:
        assert set(r.json()) == {"error"}
