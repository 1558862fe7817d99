"""Issue 22: a worker group's front owns the ports and hands connections to ready workers only.

In-process, with workers played by this test: each has its end of a Unix socket pair (REST
descriptors arrive there) and a Unix socket standing in for its gRPC server."""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.group_channel import GroupChannel
from serving.group_front import CONNECTION, READY, GroupFront, WorkerLink
from serving.listen import claim


class FakeWorker:
    """A worker's end of the pair, and an echo server (upper-cased) on its gRPC path."""

    def __init__(self, grpc_path: Path) -> None:
        self.ours, self.end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.grpc_path = grpc_path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(grpc_path))
        self.listener.listen(16)
        self.relayed = 0
        threading.Thread(target=self._echo_all, daemon=True).start()

    def _echo_all(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.relayed += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            conn.sendall(b"hello ")  # a server speaks first, as HTTP/2's settings do
            while chunk := conn.recv(65536):
                conn.sendall(chunk.upper())

    def receive_connection(self, timeout: float = 5.0) -> socket.socket:
        self.end.settimeout(timeout)
        data, fds, _, _ = socket.recv_fds(self.end, 16, 4)
        assert data == CONNECTION and len(fds) == 1
        return socket.socket(fileno=fds[0])

    def has_pending(self) -> bool:
        self.end.settimeout(0.3)
        try:
            return bool(self.end.recv(16, socket.MSG_PEEK))
        except TimeoutError:
            return False

    def close(self) -> None:
        self.end.close()
        self.listener.close()


@pytest.fixture()
def group(tmp_path: Path) -> Iterator[tuple[GroupFront, list[FakeWorker]]]:
    workers = [FakeWorker(tmp_path / f"grpc-{i}.sock") for i in range(2)]
    front = GroupFront(claim("127.0.0.1", 0), claim("127.0.0.1", 0, "gRPC"),
                       [WorkerLink(w.ours, str(w.grpc_path)) for w in workers]).start()
    yield front, workers
    front.close()
    for worker in workers:
        worker.close()


def _ports(front: GroupFront) -> tuple[int, int]:
    assert front.grpc is not None
    return front.rest.getsockname()[1], front.grpc.getsockname()[1]


def _say_ready(front: GroupFront, workers: list[FakeWorker], index: int) -> None:
    """Worker ``index`` says it is ready; back once the front has heard it."""
    workers[index].end.sendall(READY)
    deadline = time.monotonic() + 5
    while not front.workers[index].ready:
        assert time.monotonic() < deadline, "the front did not hear the worker"
        time.sleep(0.005)  # polling the front's thread


def _all_ready(group: tuple[GroupFront, list[FakeWorker]]) -> tuple[int, int]:
    """Every worker says it is ready; the group's REST and gRPC ports."""
    front, workers = group
    for index in range(len(workers)):
        _say_ready(front, workers, index)
    return _ports(front)


def _joiner(host: str, port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, port))
    s.listen(8)
    return s


def test_no_process_can_join_either_port(group: tuple[GroupFront, list[FakeWorker]]) -> None:
    """Before, a same-user SO_REUSEPORT socket joined the gRPC port and took connections; now
    both ports are one socket without SO_REUSEPORT, so the bind itself fails (this host and a
    more specific address alike)."""
    front, _ = group
    for port in _ports(front):
        for host in ("127.0.0.1", "0.0.0.0"):
            with pytest.raises(OSError) as caught:
                _joiner(host, port)
            assert caught.value.errno == errno.EADDRINUSE
    wide = claim("0.0.0.0", 0)
    try:  # a claim on every address refuses the more specific one too
        with pytest.raises(OSError) as caught:
            _joiner("127.0.0.1", wide.getsockname()[1])
        assert caught.value.errno == errno.EADDRINUSE
    finally:
        wide.close()


def test_rest_connections_wait_for_a_ready_worker_then_go_round_robin(
        group: tuple[GroupFront, list[FakeWorker]]) -> None:
    front, workers = group
    rest_port, _ = _ports(front)
    early = socket.create_connection(("127.0.0.1", rest_port), timeout=5)  # queued by the kernel
    assert not workers[0].has_pending() and not workers[1].has_pending()
    _say_ready(front, workers, 1)  # only worker 2 is ready: it gets the waiting one
    got = workers[1].receive_connection()
    early.sendall(b"ping")
    assert got.recv(4) == b"ping"  # the very connection, served by the worker
    got.close()
    early.close()
    _say_ready(front, workers, 0)
    clients = [socket.create_connection(("127.0.0.1", rest_port), timeout=5) for _ in range(10)]
    counts = [0, 0]
    held = []
    for _ in range(10):
        for index, worker in enumerate(workers):
            if worker.has_pending():
                held.append(worker.receive_connection())
                counts[index] += 1
                break
    assert counts == [5, 5], counts  # each worker every other connection, not by chance
    for conn in [*held, *clients]:
        conn.close()


def test_a_gone_worker_gets_no_more_connections(
        group: tuple[GroupFront, list[FakeWorker]]) -> None:
    workers = group[1]
    rest_port, _ = _all_ready(group)
    workers[0].end.close()  # worker 1 exited
    clients = [socket.create_connection(("127.0.0.1", rest_port), timeout=5) for _ in range(4)]
    for _ in clients:
        workers[1].receive_connection().close()
    for conn in clients:
        conn.close()


def test_grpc_bytes_are_relayed_both_ways_to_alternate_workers(
        group: tuple[GroupFront, list[FakeWorker]]) -> None:
    workers = group[1]
    _, grpc_port = _all_ready(group)
    payload = bytes(range(97, 123)) * 40_000  # 1 MB: the relay's flow control is exercised
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", grpc_port), timeout=10) as client:
            received = bytearray()
            sender = threading.Thread(target=client.sendall, args=(payload,))
            sender.start()
            while len(received) < len(b"hello ") + len(payload):
                chunk = client.recv(65536)
                assert chunk, "the relay closed early"
                received += chunk
            sender.join()
            assert bytes(received) == b"hello " + payload.upper()
    assert [w.relayed for w in workers] == [1, 1]


def test_stop_accepting_frees_the_ports_and_keeps_relayed_connections(
        group: tuple[GroupFront, list[FakeWorker]]) -> None:
    front = group[0]
    rest_port, grpc_port = _all_ready(group)
    client = socket.create_connection(("127.0.0.1", grpc_port), timeout=5)
    assert client.recv(6) == b"hello "
    front.stop_accepting()
    claim("127.0.0.1", rest_port).close()  # free for the next server at once
    client.sendall(b"still here")
    received = b""
    while len(received) < 10:
        received += client.recv(64)
    assert received == b"STILL HERE"  # the draining worker finishes its calls
    client.close()


def test_a_worker_channel_serves_handed_connections_and_stops_when_the_pair_closes(
        tmp_path: Path) -> None:
    import asyncio
    import signal

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    channel = GroupChannel.from_env({"SERVING_GROUP_FD": str(theirs.detach()),
                                     "SERVING_GROUP_GRPC": str(tmp_path / "g.sock")})
    assert channel is not None and channel.grpc_address == f"unix:{tmp_path / 'g.sock'}"
    assert GroupChannel.from_env({}) is None

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data[::-1])  # type: ignore[attr-defined]

    stopped = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopped.set())

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        channel.serve_connections(loop, Echo)
        channel.announce_ready()
        assert ours.recv(8) == READY
        client, served = socket.socketpair()
        socket.send_fds(ours, [CONNECTION], [served.fileno()])
        served.close()
        client.setblocking(False)
        await loop.sock_sendall(client, b"abc")
        answer = await asyncio.wait_for(loop.sock_recv(client, 8), 5)
        client.close()
        ours.close()  # the supervisor is gone
        for _ in range(100):
            if stopped.is_set():
                break
            await asyncio.sleep(0.02)
        return answer

    try:
        assert asyncio.run(main()) == b"cba"
        assert stopped.is_set()  # the worker drains as on SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
        channel.pair.close()


def test_a_worker_with_a_full_pair_is_skipped_not_dropped(
        group: tuple[GroupFront, list[FakeWorker]]) -> None:
    """A stalled worker (its pair's buffer full) passes its turn; once it reads again it gets
    connections again, where marking it gone would have lost it for good."""
    front, workers = group
    rest_port, _ = _all_ready(group)
    stalled = front.workers[0].pair
    filler = 0
    try:
        while True:
            filler += stalled.send(b"x" * 4096)
    except BlockingIOError:
        pass
    clients = [socket.create_connection(("127.0.0.1", rest_port), timeout=5) for _ in range(2)]
    for _ in clients:
        workers[1].receive_connection().close()
    assert front.workers[0].ready
    workers[0].end.settimeout(5)
    drained = 0
    while drained < filler:  # the worker reads again
        drained += len(workers[0].end.recv(1 << 16))
    clients += [socket.create_connection(("127.0.0.1", rest_port), timeout=5) for _ in range(2)]
    assert workers[0].has_pending()  # its turn again
    workers[0].receive_connection().close()
    for conn in clients:
        conn.close()
