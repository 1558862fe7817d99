"""Issue 10, slow clients: 300 clients that never finish their request head, against a real
`serving start` process whose open-file limit is 256. Before the header timeout and the
connection cap, they made normal requests time out and flooded the log with EMFILE errors."""

from __future__ import annotations

import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

from serving.server import free_port
from tests.server_process import wait_ready

from .test_hardening import closed_by_server

ROOT = Path(__file__).resolve().parents[2]
FD_LIMIT = 256
SLOW_CLIENTS = 300
HEADER_TIMEOUT_S = 2.0


def _low_fd_limit() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def test_300_slow_clients_under_a_256_fd_limit(tmp_path: Path, saved_model: Path) -> None:
    import shutil

    shutil.copytree(saved_model, tmp_path / "serving" / "mnist" / "1")
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "start", "--source", "directory", "--serving-dir",
             str(tmp_path / "serving"), "--port", str(port), "--header-timeout-s",
             str(HEADER_TIMEOUT_S)],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3"),
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_low_fd_limit)
    url = f"http://127.0.0.1:{port}"
    slow: list[tuple[socket.socket, float]] = []
    try:
        wait_ready(url, proc, 120, log=log_path)
        warm = requests.post(f"{url}/v1/models/mnist:predict",  # the first call traces the model
                             json={"instances": [[[[0.0]] * 28] * 28]}, timeout=30)
        assert warm.status_code == 200, warm.text
        for i in range(SLOW_CLIENTS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: x\r\nX-Slow: "
                         if i % 2 else b"GET /v2/hea")  # a partial head, then nothing
            slow.append((sock, time.monotonic()))
        latencies = []
        with requests.Session() as session:
            for _ in range(40):
                started = time.perf_counter()
                response = session.post(f"{url}/v1/models/mnist:predict",
                                        json={"instances": [[[[0.0]] * 28] * 28]}, timeout=10)
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
        fresh = []
        for _ in range(10):  # new connections too, while the slow ones hold the rest
            started = time.perf_counter()
            assert requests.get(f"{url}/v2/health/live", timeout=10).status_code == 200
            fresh.append(time.perf_counter() - started)
        for sock, _ in slow:
            sock.settimeout(HEADER_TIMEOUT_S + 8)  # the timeout plus generous slack (noisy CI)
        closed = [closed_by_server(sock) for sock, _ in slow]
        assert all(closed), f"{closed.count(False)} slow clients still open"
        print(f"predict p50 {statistics.median(latencies) * 1000:.1f} ms, max "
              f"{max(latencies) * 1000:.1f} ms; new connection p50 "
              f"{statistics.median(fresh) * 1000:.1f} ms, max {max(fresh) * 1000:.1f} ms")
        assert statistics.median(latencies) < 0.1 and statistics.median(fresh) < 0.1
        assert max(latencies + fresh) < 0.5  # none waits for the slow ones (an EMFILE stall: 1 s)
        assert proc.poll() is None
    finally:
        for sock, _ in slow:
            sock.close()
        proc.terminate()
        proc.wait(timeout=60)
    text = log_path.read_text(errors="replace")
    assert "Too many open files" not in text, text[-3000:]  # accept() never hit EMFILE
    assert len(text) < 200_000  # the log does not flood
