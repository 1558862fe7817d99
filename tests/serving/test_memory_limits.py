"""Issue 10, memory per request: a cap on request bodies in flight (503 + Retry-After before the
body is read) and big requests run in slices, so a request's memory does not scale with it."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from serving.admission import BodyBudget, Busy
from serving.app import INFLIGHT_BODIES, ServerConfig
from serving.batching import Batcher, BatchingConfig

from .conftest import Server, start_server
from .test_hardening import connect, image_list


def test_budget_admits_a_lone_request_of_any_size_and_refuses_what_does_not_fit() -> None:
    budget = BodyBudget(1000)
    assert budget.try_take(5000)  # alone: always admitted (the body limit bounds it)
    assert not budget.try_take(1)
    budget.give(5000)
    assert budget.try_take(600) and budget.try_take(400)
    with pytest.raises(Busy, match="--max-inflight-mb") as refused:
        budget.take(1)
    assert refused.value.http_status == 503 and refused.value.retry_after_s >= 1
    assert budget.refused == 2 and budget.in_use == 1000
    assert BodyBudget(None).try_take(10**12) and BodyBudget(None).try_take(10**12)


def test_default_limit_follows_the_body_limit() -> None:
    config = ServerConfig(max_body_bytes=1000)
    assert config.inflight_limit == INFLIGHT_BODIES * 1000
    assert ServerConfig(max_body_bytes=1000, max_inflight_bytes=0).inflight_limit is None
    assert ServerConfig(max_inflight_bytes=5).inflight_limit == 5


@pytest.fixture
def capped(source) -> Iterator[Server]:  # noqa: ANN001
    source.deploy("root_mnist", 1)
    srv = start_server(source, ServerConfig(port=0, max_body_bytes=2 * 1024 * 1024,
                                            max_inflight_bytes=1024 * 1024))
    yield srv
    srv.http.stop()
    srv.runtime.close()


def _held_request(url: str, length: int) -> socket.socket:
    """A predict request whose head promises ``length`` body bytes, with the body not yet sent:
    it holds its share of the budget while the body trickles."""
    sock = connect(url)
    sock.sendall(f"POST /v1/models/root_mnist:predict HTTP/1.1\r\nHost: x\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode())
    return sock


def test_bodies_over_the_inflight_cap_get_503_with_retry_after(capped: Server) -> None:
    body = json.dumps({"instances": [image_list(0.5)] * 60}).encode()
    assert 0.2 * 1024 * 1024 < len(body) < 0.5 * 1024 * 1024
    assert requests.post(f"{capped.url}/v1/models/root_mnist:predict", data=body,
                         timeout=30).status_code == 200
    one = json.dumps(image_list()).encode()
    payload = b'{"instances": [' + b",".join([one] * (900_000 // len(one))) + b"]}"
    held = _held_request(capped.url, len(payload))  # ~0.86 MB of the 1 MB budget
    try:
        for _ in range(100):  # until the server has read the head and reserved the bytes
            refused = requests.post(f"{capped.url}/v1/models/root_mnist:predict", data=body,
                                    timeout=30)
            if refused.status_code == 503:
                break
            threading.Event().wait(0.05)  # polling: the held request's head is on its way
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert "--max-inflight-mb" in refused.json()["error"]
        # small requests without a body are not held back
        assert requests.get(f"{capped.url}/v1/models/root_mnist", timeout=10).status_code == 200
        held.sendall(payload)
        held.settimeout(30)
        head = held.recv(65536)
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
    finally:
        held.close()
    assert requests.post(f"{capped.url}/v1/models/root_mnist:predict", data=body,
                         timeout=30).status_code == 200  # the budget was given back


def test_a_big_request_runs_in_slices_with_the_same_result() -> None:
    calls: list[int] = []

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2, "z": inputs["x"][:, :1]}

    batcher = Batcher(run, None, BatchingConfig(max_batch=8, chunk_rows=100, parallel_slices=1))
    x = np.arange(1000 * 3, dtype=np.float32).reshape(1000, 3)
    out = asyncio.run(batcher.submit({"x": x}))
    assert calls == [100] * 10
    np.testing.assert_array_equal(out["y"], x * 2)
    np.testing.assert_array_equal(out["z"], x[:, :1])
    calls.clear()
    asyncio.run(batcher.submit({"x": x[:100]}))
    assert calls == [100]  # small requests: one call, as before
    with pytest.raises(ValueError, match="chunk_rows"):
        BatchingConfig(chunk_rows=0)


def test_big_calls_run_as_parallel_slices_at_most_parallel_at_once() -> None:
    running, peak, calls = [0], [0], []
    lock = threading.Lock()

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            calls.append(len(inputs["x"]))
        time.sleep(0.02)  # long enough for the slices to overlap
        with lock:
            running[0] -= 1
        return {"y": inputs["x"] + 1}

    config = BatchingConfig(max_batch=8, chunk_rows=100, parallel_slices=3, min_slice_rows=16)
    with ThreadPoolExecutor(8) as pool:
        batcher = Batcher(run, pool, config)
        x = np.arange(1000, dtype=np.float32).reshape(1000, 1)
        out = asyncio.run(batcher.submit({"x": x}))
        np.testing.assert_array_equal(out["y"], x + 1)  # in order, nothing lost
        assert calls == [100] * 10 and peak[0] == 3  # memory bound: 3 slices in the model
        calls.clear()
        asyncio.run(batcher.submit({"x": x[:64]}))
        assert sorted(calls) == [20, 22, 22]  # one batch's worth, cut for the 3 threads
        calls.clear()
        asyncio.run(batcher.submit({"x": x[:31]}))
        assert calls == [31]  # too small to cut into 16-row slices
        calls.clear()
        empty = asyncio.run(batcher.submit({"x": x[:0]}))
        assert calls == [0] and empty["y"].shape == (0, 1)  # one call, as TF answers it


def test_a_lone_small_request_runs_on_the_event_loop_and_company_goes_to_the_executor() -> None:
    threads: list[str] = []

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        threads.append(threading.current_thread().name)
        return {"y": inputs["x"]}

    alone = [True]
    with ThreadPoolExecutor(2, thread_name_prefix="model") as pool:
        batcher = Batcher(run, pool, BatchingConfig(inline_max_rows=8), alone=lambda: alone[0])
        small, big = np.zeros((1, 2), np.float32), np.zeros((9, 2), np.float32)
        asyncio.run(batcher.submit({"x": small}))
        asyncio.run(batcher.submit({"x": big}))  # too big to block the loop with
        alone[0] = False
        asyncio.run(batcher.submit({"x": small}))  # others in progress: batch with them
    assert threads[0] == "MainThread"
    assert threads[1].startswith("model") and threads[2].startswith("model")
    windowed = Batcher(run, None, BatchingConfig(window_s=5.0), alone=lambda: True)
    started = time.perf_counter()
    asyncio.run(windowed.submit({"x": small}))
    assert time.perf_counter() - started < 2.0  # a lone request does not wait for company
    with pytest.raises(ValueError, match="inline_max_rows"):
        BatchingConfig(inline_max_rows=-1)
