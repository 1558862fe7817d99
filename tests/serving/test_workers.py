"""``serving start --workers 2``: two server processes share one port (a steered SO_REUSEPORT group),
connections are spread over both, nobody else gets any, and SIGTERM to the supervisor drains and
stops both."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from serving.server import free_port
from serving.workers import wait_for_first_sync
from tests.server_process import wait_ready

ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_two_workers_share_the_port_and_stop_together(tmp_path: Path, saved_model: Path) -> None:
    shutil.copytree(saved_model, tmp_path / "serving" / "mnist" / "1")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving", "start", "--source", "directory", "--serving-dir",
         str(tmp_path / "serving"), "--port", str(port), "--grpc-port", "0", "--workers", "2"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, 120)
        assert len(_children(proc.pid)) == 2
        workers = _children(proc.pid)
        # Each worker listens on its own socket of the group (issue 22's first fix shared one:
        # 32 connections opened at once then went 32/0, 31/1 or 24/8).
        listening = _inodes(port, "0A")
        assert len(listening) == 2 and all(len(listening & _socket_inodes(pid)) == 1
                                           for pid in workers)
        # A same-user process joining the port with SO_REUSEPORT gets no connection.
        joiner = socket.socket()
        joiner.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        joiner.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        joiner.bind(("127.0.0.1", port))
        joiner.listen(64)
        joiner.setblocking(False)
        clients = [_keep_alive_client(port) for _ in range(32)]
        try:
            per_worker = [len(_inodes(port, "01") & _socket_inodes(pid)) for pid in workers]
            assert sum(per_worker) == 32 and min(per_worker) >= 4, per_worker  # P(< 4) ~ 1e-6
            try:
                joiner.accept()
                raise AssertionError("the joiner was handed a connection")
            except BlockingIOError:
                pass
        finally:
            joiner.close()
            for client in clients:
                client.close()
        body = {"instances": [[[[0.5]] * 28] * 28]}
        for _ in range(40):
            r = requests.post(f"{url}/v1/models/mnist:predict", json=body, timeout=10,
                              headers={"Connection": "close"})
            assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert all(not Path(f"/proc/{pid}").exists() or
                   "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2] for pid in workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _inodes(port: int, state: str) -> set[str]:
    """Inodes of the IPv4 sockets on local ``port`` in ``state`` (/proc/net/tcp: 0A listening,
    01 established)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == state:
            found.add(fields[9])
    return found


def _keep_alive_client(port: int) -> socket.socket:
    """A connection that has had one answer (so a worker accepted it) and stays open."""
    client = socket.create_connection(("127.0.0.1", port), timeout=30)
    client.sendall(b"GET /v1/models/mnist HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = client.recv(4096)
        assert chunk, "the server closed the connection"
        received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received[:100]
    return client


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def test_workers_need_an_explicit_port() -> None:
    done = subprocess.run([sys.executable, "-m", "serving", "start", "--port", "0", "--workers",
                           "2"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 2 and "explicit --port" in done.stderr


def test_a_worker_listens_only_once_its_models_are_loaded(tmp_path: Path,
                                                          saved_model: Path) -> None:
    """A worker accepting while still loading would answer 503 while a ready worker answers
    the readiness probe. So the first answer a worker ever gives is "ready": it holds the port
    from the start (issue 22: claimed before loading) and accepts once its models are loaded;
    a connection made meanwhile waits in the queue."""
    shutil.copytree(saved_model, tmp_path / "serving" / "mnist" / "1")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving", "start", "--source", "directory", "--serving-dir",
         str(tmp_path / "serving"), "--port", str(port), "--grpc-port", "0", "--reuse-port"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                first = requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=120)
                break
            except requests.ConnectionError:  # not listening yet
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)  # polling for the port to open
        assert first.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_waiting_for_the_first_sync_is_bounded() -> None:
    synced = threading.Event()
    threading.Timer(0.1, synced.set).start()
    assert wait_for_first_sync(synced, limit_s=10, tell_every_s=0.02)
    started = time.monotonic()
    assert not wait_for_first_sync(threading.Event(), limit_s=0.2, tell_every_s=0.05)
    assert 0.2 <= time.monotonic() - started < 5


def test_capture_with_two_workers_keeps_every_request_once(tmp_path: Path,
                                                            saved_model: Path) -> None:
    """``--workers 2 --capture-rate 1``: each worker has its own writer process, so files never
    clash (the writer's pid is in the name); every request is answered and captured exactly once,
    and both workers' captures are there."""
    import re

    import tensorflow as tf

    from contracts import capture as layout
    from tests.serving.test_capture import finished_files, read_logs

    shutil.copytree(saved_model, tmp_path / "serving" / "mnist" / "1")
    capture = tmp_path / "capture"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving", "start", "--source", "directory", "--serving-dir",
         str(tmp_path / "serving"), "--port", str(port), "--grpc-port", "0", "--workers", "2",
         "--capture-dir", str(capture), "--capture-rate", "1.0"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, 120)
        for n in range(40):  # new connections: the kernel spreads them over both workers
            body = {"instances": [[[[n / 40]] * 28] * 28]}
            r = requests.post(f"{url}/v1/models/mnist:predict", json=body, timeout=10,
                              headers={"Connection": "close"})
            assert r.status_code == 200, r.text
        proc.send_signal(signal.SIGTERM)  # each worker's writer finishes its files on the way out
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    files = finished_files(capture)
    folder = Path(layout.version_dir(str(capture), "mnist", 1))
    assert not [p for p in folder.iterdir() if p not in files]  # no .tmp left behind
    writers = {re.match(r"capture-\d{8}T\d{6}-(\d+)-", p.name).group(1) for p in files}
    assert len(writers) == 2, [p.name for p in files]  # P(all 40 to one worker) = 2^-39
    seen = [round(float(tf.make_ndarray(log.predict_log.request.inputs["images"]).flat[0]) * 40)
            for log in read_logs(files)]
    assert sorted(seen) == list(range(40))
