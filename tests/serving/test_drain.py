"""Graceful shutdown in-process: while draining, readiness is off, keep-alive is off, and a
request still uploading its body is answered."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from serving.drain import Drain
from tests.serving.conftest import FakeSource, start_server


def test_wait_idle_waits_for_the_last_request_and_times_out() -> None:
    async def scenario() -> tuple[bool, bool, float]:
        drain = Drain()
        drain.enter()
        drain.enter()
        assert not await drain.wait_idle(0.05)  # two still running
        assert drain.draining

        async def finish() -> None:
            await asyncio.sleep(0.05)
            drain.leave()
            await asyncio.sleep(0.05)
            drain.leave()

        started = time.monotonic()
        task = asyncio.create_task(finish())
        done = await drain.wait_idle(5)
        await task
        return done, drain.active == 0, time.monotonic() - started

    done, idle, waited = asyncio.run(scenario())
    assert done and idle and 0.09 <= waited < 2


def test_wait_idle_stops_waiting_when_aborted() -> None:
    async def scenario() -> tuple[bool, float]:
        drain, abort = Drain(), asyncio.Event()
        drain.enter()
        asyncio.get_running_loop().call_later(0.05, abort.set)
        started = time.monotonic()
        done = await drain.wait_idle(10, abort=abort)
        return done, time.monotonic() - started

    done, waited = asyncio.run(scenario())
    assert not done and waited < 2


def test_draining_server_finishes_uploads_and_turns_readiness_off(source: FakeSource) -> None:
    source.deploy("mnist", 1)
    srv = start_server(source)
    body = json.dumps({"instances": [[[[0.25]] * 28] * 28] * 50}).encode()
    proceed = threading.Event()
    outcome: dict[str, object] = {}

    def chunks() -> Iterator[bytes]:
        yield body[:100]
        proceed.wait(30)
        yield body[100:]

    def upload() -> None:
        r = requests.post(f"{srv.url}/v1/models/mnist:predict", data=chunks(), timeout=60)
        outcome.update(status=r.status_code, rows=len(r.json()["predictions"]))

    keep_alive = requests.Session()
    try:
        assert keep_alive.get(f"{srv.url}/v2/health/ready", timeout=5).status_code == 200
        uploader = threading.Thread(target=upload)
        uploader.start()
        deadline = time.monotonic() + 20
        gauge = srv.runtime.metrics.registry.get_sample_value
        while (gauge("serving_requests_in_flight") or 0) < 1:
            assert time.monotonic() < deadline, "the upload never reached the handler"
            time.sleep(0.02)
        stopper = threading.Thread(target=srv.http.stop)
        stopper.start()
        time.sleep(0.3)
        assert stopper.is_alive(), "stopped without waiting for the upload"
        ready = keep_alive.get(f"{srv.url}/v2/health/ready", timeout=5)
        assert ready.status_code == 503 and ready.json() == {"ready": False}
        assert ready.headers.get("Connection", "").lower() == "close"
        with pytest.raises(requests.ConnectionError):  # the listener is closed
            requests.get(f"{srv.url}/v2/health/live", timeout=2)
        proceed.set()
        uploader.join(30)
        stopper.join(30)
        assert outcome == {"status": 200, "rows": 50}
        assert not stopper.is_alive()
    finally:
        proceed.set()
        keep_alive.close()
        srv.http.stop()
        srv.runtime.close()

