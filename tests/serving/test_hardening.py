"""Issue 10 hardening: bounded metrics, 4xx (never 500) for hostile bodies, slow clients."""

from __future__ import annotations

import errno
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from serving.app import MAX_JSON_DEPTH, ServerConfig, json_depth
from serving.metrics import Metrics
from serving.server import AcceptErrorLog, BackgroundServer

from .conftest import Server, start_server


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


# derandomize: the same 150 cases on every CI run; cases found by exploring are pinned below.
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(route=st.sampled_from(ROUTES), body=BODIES,
       content_type=st.sampled_from(["application/json", "text/csv", "application/jsonlines"]))
@example(route="/invocations", body=b"\x00", content_type="text/csv")  # csv.Error was a 500
def test_malformed_bodies_never_get_5xx(server: Server, route: str, body: bytes,
                                        content_type: str) -> None:
    r = requests.post(server.url + route, data=body, timeout=30,
                      headers={"Content-Type": content_type})
    assert r.status_code < 500, (route, body[:200], r.text)
    if r.status_code >= 400:
        assert set(r.json()) == {"error"}


# -- 4. slow clients, connection cap, accept errors -------------------------------------------------
def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server closed the connection (recv sees EOF or a reset) within the
    socket's timeout; False when it stayed open."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def http_get(sock: socket.socket, path: str = "/v2/health/live") -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))
    while len(rest) < length:
        rest += sock.recv(65536)
    return head


@pytest.fixture
def guarded(source) -> Iterator[Server]:
    source.deploy("root_mnist", 1)
    srv = start_server(source, ServerConfig(port=0, header_timeout_s=0.5, max_connections=40))
    yield srv
    srv.http.stop()
    srv.runtime.close()


def test_slow_header_clients_are_closed_and_others_served(guarded: Server) -> None:
    u = guarded.url
    slow = []
    for i in range(30):
        sock = connect(u)
        if i % 3 == 0:
            sock.sendall(b"GET /v2/hea")  # a partial request line, then nothing
        elif i % 3 == 1:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # partial head
        slow.append(sock)  # (i % 3 == 2: connects and sends nothing)
    kept = connect(u)  # a kept-alive connection that then trickles its next request
    assert http_get(kept).startswith(b"HTTP/1.1 200")
    kept.sendall(b"GET /v2/health/li")
    slow.append(kept)
    # normal requests are answered meanwhile
    for _ in range(5):
        assert requests.get(f"{u}/v2/health/live", timeout=5).status_code == 200
    for sock in slow:
        sock.settimeout(10)  # 20x the 0.5 s header timeout: generous, not a timing assertion
    assert all(closed_by_server(sock) for sock in slow)
    for sock in slow:
        sock.close()
    assert requests.post(f"{u}/v1/models/root_mnist:predict",
                         json={"instances": [image_list()]}, timeout=10).status_code == 200


def test_idle_keepalive_connection_is_not_cut_by_the_header_timeout(guarded: Server) -> None:
    sock = connect(guarded.url)
    try:
        assert http_get(sock).startswith(b"HTTP/1.1 200")
        time.sleep(1.5)  # 3x the header timeout, idle (no bytes): keep-alive rules, not headers
        assert http_get(sock).startswith(b"HTTP/1.1 200")
    finally:
        sock.close()


def test_connection_cap_evicts_waiting_connections_then_refuses(guarded: Server) -> None:
    u = guarded.url
    guarded.http.stop()  # restart with a long header timeout and a cap of 5
    guarded.http = BackgroundServer(guarded.runtime, ServerConfig(
        port=0, header_timeout_s=60, max_connections=5)).start()
    u = guarded.http.url
    idle = [connect(u) for _ in range(5)]
    for sock in idle:  # answered: each is counted and now idle
        assert http_get(sock).startswith(b"HTTP/1.1 200")
    # at the cap, a new connection is served: the oldest idle one is closed for it
    assert requests.get(f"{u}/v2/health/live", timeout=5).status_code == 200
    idle[0].settimeout(10)
    assert closed_by_server(idle[0])
    for sock in idle:
        sock.close()


def test_connection_cap_refuses_when_all_are_busy(source) -> None:
    source.deploy("root_mnist", 1)
    srv = start_server(source, ServerConfig(port=0, max_connections=2, timeout_s=30))
    u = srv.url
    busy = []
    try:
        for _ in range(2):  # each is in the middle of uploading a body: busy, never evicted
            sock = connect(u)
            sock.sendall(b"POST /v1/models/root_mnist:predict HTTP/1.1\r\nHost: x\r\n"
                         b"Expect: 100-continue\r\nContent-Length: 100000\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 100")  # its handler is running
            sock.sendall(b'{"instances": ')
            busy.append(sock)
        refused = requests.get(f"{u}/v2/health/live", timeout=5)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1" and "connections" in refused.json()["error"]
        busy.pop().close()  # one finishes: room again (once the server saw the close)
        for _ in range(1000):
            try:
                if requests.get(f"{u}/v2/health/live", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
        else:
            raise AssertionError("no room after a busy connection closed")
    finally:
        for sock in busy:
            sock.close()
        srv.http.stop()
        srv.runtime.close()


def test_accept_errors_are_logged_once_per_interval() -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("serving.server").addHandler(handler)
    defaults: list[dict] = []

    class Loop:
        def default_exception_handler(self, context: dict) -> None:
            defaults.append(context)

    try:
        log_errors = AcceptErrorLog(interval_s=3600)
        emfile = OSError(errno.EMFILE, "Too many open files")
        for _ in range(10_000):
            log_errors(Loop(), {"message": "socket.accept() out of system resource",
                                "exception": emfile})
        log_errors(Loop(), {"message": "something else", "exception": ValueError("x")})
    finally:
        logging.getLogger("serving.server").removeHandler(handler)
    assert len(records) == 1 and "Too many open files" in records[0].getMessage()
    assert log_errors.total == 10_000 and log_errors.suppressed == 9_999
    assert len(defaults) == 1


# -- 7. the images contract: grey values in [0, 1] ----------------------------------------------
@pytest.mark.parametrize("value, words", [
    (True, "true/false"), (1e30, "from 0 to 1e+30"), (255.0, "divide by 255"),
    (-0.5, "from -0.5 to 0"),
])
def test_pixels_outside_the_contract_are_refused(server: Server, value: object,
                                                 words: str) -> None:
    instance = image_list()
    instance[3][4] = [value]
    if value is True:
        instance = [[[True] for _ in range(28)] for _ in range(28)]
    for route, body in ((f"{server.url}/v1/models/root_mnist:predict", {"instances": [instance]}),
                        (f"{server.url}/v2/models/root_mnist/infer", {"inputs": [{
                            "name": "images", "shape": [1, 28, 28, 1], "datatype": "FP32",
                            "data": instance}]})):
        r = requests.post(route, json=body, timeout=10)
        assert r.status_code == 400, r.text
        assert words in r.json()["error"], r.json()
    ok = requests.post(f"{server.url}/v1/models/root_mnist:predict",
                       json={"instances": [image_list(1.0), image_list(0.0)]}, timeout=10)
    assert ok.status_code == 200  # the bounds themselves are fine
