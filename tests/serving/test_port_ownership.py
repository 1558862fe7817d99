"""Issue 22: a worker group owns its port; a clash is refused before any model loads."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from serving.listen import check_free, claim, hold_other_family
from serving.server import free_port
from tests.server_process import wait_ready

ROOT = Path(__file__).resolve().parents[2]


def _reuseport_socket(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    return s


def test_a_claimed_port_cannot_be_joined_even_with_so_reuseport() -> None:
    held = claim("127.0.0.1", 0)
    port = held.getsockname()[1]
    try:
        with pytest.raises(OSError) as caught:
            _reuseport_socket(port).listen(1)
        assert caught.value.errno == errno.EADDRINUSE
        with pytest.raises(OSError, match=f"REST on 127.0.0.1:{port}: the port is in use"):
            claim("127.0.0.1", port)
        with pytest.raises(OSError, match="in use"):
            check_free("127.0.0.1", port)
    finally:
        held.close()
    claim("127.0.0.1", port).close()  # free again once the holder is gone


def test_check_free_sees_a_so_reuseport_group() -> None:
    group = _reuseport_socket(0)
    group.listen(1)
    try:
        with pytest.raises(OSError, match="cannot listen for gRPC"):
            check_free("127.0.0.1", group.getsockname()[1])
    finally:
        group.close()


@pytest.mark.parametrize(("host", "other"), [("127.0.0.1", "::1"), ("0.0.0.0", "::")])
def test_the_same_port_in_the_other_address_family_is_held(host: str, other: str) -> None:
    """A client asking for ``localhost`` may try IPv6 first: nobody else may listen there."""
    held = claim(host, 0)
    port = held.getsockname()[1]
    guard = hold_other_family(host, port)
    if guard is None:
        held.close()
        pytest.skip("no IPv6 on this machine: nothing can listen there either")
    try:
        rogue = socket.socket(socket.AF_INET6)
        rogue.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        rogue.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rogue.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with pytest.raises(OSError) as caught:
            rogue.bind((other, port))
        assert caught.value.errno == errno.EADDRINUSE
        rogue.close()
        with socket.socket(socket.AF_INET6) as client:  # refused at once: the client falls back
            assert client.connect_ex(("::1", port)) == errno.ECONNREFUSED
        with pytest.raises(OSError, match="other address family"):
            hold_other_family(host, port)
    finally:
        guard.close()
        held.close()
    assert hold_other_family("192.0.2.1", port) is None  # no counterpart for other addresses


def _start(serving_dir: Path, port: int, *extra: str, grpc_port: int = 0
           ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "serving", "start", "--source", "directory", "--serving-dir",
         str(serving_dir), "--port", str(port), "--grpc-port", str(grpc_port), *extra],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_a_second_group_or_server_on_the_port_is_refused_before_loading(
        tmp_path: Path, saved_model: Path) -> None:
    """Group A (2 workers) owns both ports; group B (2 workers, another model) and a plain
    server, on A's REST port or only on its gRPC port, are refused within seconds, without
    loading, and every call still reaches A."""
    shutil.copytree(saved_model, tmp_path / "a" / "mnist" / "1")
    shutil.copytree(saved_model, tmp_path / "b" / "other" / "1")
    port, grpc_port = free_port(), free_port()
    first = _start(tmp_path / "a", port, "--workers", "2", grpc_port=grpc_port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, first, 120)
        clashes = [(port, 0, ("--workers", "2")), (port, 0, ()),
                   (free_port(), grpc_port, ("--workers", "2")), (free_port(), grpc_port, ())]
        for rest, grpc, extra in clashes:
            started = time.monotonic()
            second = _start(tmp_path / "b", rest, *extra, grpc_port=grpc)
            _, err = second.communicate(timeout=60)
            took = time.monotonic() - started
            assert second.returncode != 0 and "in use" in err, err
            assert "LOADING" not in err.upper() and took < 20, (took, err)
        for _ in range(20):  # new connections: none reaches another group's model
            r = requests.get(f"{url}/v1/models", timeout=10, headers={"Connection": "close"})
            assert [m["name"] for m in r.json()["models"]] == ["mnist"]
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
