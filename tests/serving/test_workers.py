"""``serving start --workers 2``: the supervisor owns both ports and hands connections to two
server processes in turn, nobody else can join either port, gRPC is relayed to both, SIGTERM
drains and stops both, and a killed supervisor frees the ports and stops its workers."""

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

import grpc
import numpy as np
import pytest
import requests

from serving.server import free_port
from serving.workers import sweep_stale_group_dirs, wait_for_first_sync
from tests.server_process import wait_ready

ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _group(tmp_path: Path, saved_model: Path, port: int, grpc_port: int = 0
           ) -> subprocess.Popen[bytes]:
    shutil.copytree(saved_model, tmp_path / "serving" / "mnist" / "1")
    with (tmp_path / "group.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "serving", "start", "--source", "directory", "--serving-dir",
             str(tmp_path / "serving"), "--port", str(port), "--grpc-port", str(grpc_port),
             "--workers", "2"],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3",
                               TMPDIR=str(_private_tmp(tmp_path))),
            stdout=subprocess.DEVNULL, stderr=log)


def _private_tmp(tmp_path: Path) -> Path:
    """The group's temporary directory (where its private gRPC directory goes)."""
    path = tmp_path / "tmp"
    path.mkdir(exist_ok=True)
    return path


def _wait_all_ready(tmp_path: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until the supervisor has heard both workers say they are ready (its log says so)."""
    deadline = time.monotonic() + 120
    while True:
        text = (tmp_path / "group.log").read_text(errors="replace")
        if "worker 1 of 2 ready" in text and "worker 2 of 2 ready" in text:
            return
        assert proc.poll() is None and time.monotonic() < deadline, text[-3000:]
        time.sleep(0.1)  # polling the log


def _grpc_predict(port: int) -> None:
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from serving.grpc_codec import to_proto

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mnist"
    request.inputs["images"].CopyFrom(to_proto(np.full((1, 28, 28, 1), 0.5, np.float32)))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=30)
    assert response.model_spec.name == "mnist"


def test_two_workers_share_the_ports_and_stop_together(tmp_path: Path,
                                                       saved_model: Path) -> None:
    port, grpc_port = free_port(), free_port()
    proc = _group(tmp_path, saved_model, port, grpc_port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, 120)
        _wait_all_ready(tmp_path, proc)
        workers = _children(proc.pid)
        assert len(workers) == 2
        # Only the supervisor listens; a same-user process cannot join either port, on this
        # address or a more specific one (before: a SO_REUSEPORT joiner took gRPC clients).
        assert _inodes(port, "0A") <= _socket_inodes(proc.pid)
        assert _inodes(grpc_port, "0A") <= _socket_inodes(proc.pid)
        assert all(not _inodes(p, "0A") & _socket_inodes(w)
                   for p in (port, grpc_port) for w in workers)
        for joined in (port, grpc_port):
            joiner = socket.socket()
            joiner.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            joiner.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            with pytest.raises(OSError, match="in use"):
                joiner.bind(("127.0.0.1", joined))
            joiner.close()
        # Connections are handed out in turn: 32 keep-alive clients, 16 each.
        clients = [_keep_alive_client(port) for _ in range(32)]
        try:
            per_worker = [len(_inodes(port, "01") & _socket_inodes(pid)) for pid in workers]
            assert sorted(per_worker) == [16, 16], per_worker
        finally:
            for client in clients:
                client.close()
        body = {"instances": [[[[0.5]] * 28] * 28]}
        for _ in range(40):
            r = requests.post(f"{url}/v1/models/mnist:predict", json=body, timeout=10,
                              headers={"Connection": "close"})
            assert r.status_code == 200
        for _ in range(4):  # each channel is one connection, relayed to the next worker
            _grpc_predict(grpc_port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert all(not Path(f"/proc/{pid}").exists() or
                   "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2] for pid in workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_killed_supervisor_frees_the_ports_and_its_workers_stop(tmp_path: Path,
                                                                  saved_model: Path) -> None:
    port, grpc_port = free_port(), free_port()
    proc = _group(tmp_path, saved_model, port, grpc_port)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, 120)
        workers = _children(proc.pid)
        proc.kill()  # SIGKILL: no handler runs
        proc.wait()
        for free in (port, grpc_port):  # the kernel closed the claims with the process
            with socket.socket() as again:
                again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                again.bind(("127.0.0.1", free))
                again.listen(1)
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "workers outlived their supervisor"
            time.sleep(0.1)  # polling: the workers are not our children
        # its private gRPC directory is left behind; the next group's sweep removes it
        left = list(_private_tmp(tmp_path).glob(f"serving-group-{proc.pid}-*"))
        assert len(left) == 1
        live = _private_tmp(tmp_path) / f"serving-group-{os.getpid()}-live"
        live.mkdir()  # a running supervisor's (this process is alive): kept
        # a dead pid, but a worker still listens inside (a group in another PID namespace): kept
        elsewhere = _private_tmp(tmp_path) / f"serving-group-{left[0].name.split('-')[2]}-other"
        elsewhere.mkdir()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listening:
            listening.bind(str(elsewhere / "grpc-0.sock"))
            listening.listen(1)
            # the dead group's sockets refuse connections once the last process holding one
            # has gone, a moment after its workers stopped: until then the sweep keeps it too
            removed: list[str] = []
            while not removed:
                assert time.monotonic() < deadline, "the killed group's directory was kept"
                removed = sweep_stale_group_dirs(str(_private_tmp(tmp_path)))
                time.sleep(0.1)  # polling: nothing to wait on for another process's sockets
        assert removed == [str(left[0])]
        assert not left[0].exists() and live.is_dir() and elsewhere.is_dir()
    finally:
        for pid in _children(proc.pid) if proc.poll() is None else []:
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False


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


def test_a_worker_gets_connections_only_once_its_models_are_loaded(tmp_path: Path,
                                                                   saved_model: Path) -> None:
    """A worker answering while still loading would say 503 while the others were ready (a load
    balancer's readiness probe, answered by a ready worker, cannot see that). So the first answer
    a group ever gives is "ready": the supervisor holds the port from the start (issue 22: before
    loading) and hands a connection over once a worker says it is loaded; meanwhile it waits in
    the kernel's queue."""
    port = free_port()
    proc = _group(tmp_path, saved_model, port)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                first = requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=120)
                break
            except requests.ConnectionError:  # the supervisor is not listening yet
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
    from tests.serving.capture_logs import finished_files, read_logs

    shutil.copytree(saved_model, tmp_path / "serving" / "mnist" / "1")
    capture = tmp_path / "capture"
    port = free_port()
    with (tmp_path / "group.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "start", "--source", "directory", "--serving-dir",
             str(tmp_path / "serving"), "--port", str(port), "--grpc-port", "0", "--workers",
             "2", "--capture-dir", str(capture), "--capture-rate", "1.0"],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3"),
            stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, 120)
        _wait_all_ready(tmp_path, proc)
        for n in range(40):  # new connections: handed to the two workers in turn
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
    assert len(writers) == 2, [p.name for p in files]  # 20 connections each
    seen = [round(float(tf.make_ndarray(log.predict_log.request.inputs["images"]).flat[0]) * 40)
            for log in read_logs(files)]
    assert sorted(seen) == list(range(40))
