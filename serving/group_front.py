"""The front of a ``--workers`` group: the supervisor owns both ports, the workers get connections.

The supervisor claims the REST and gRPC ports as any ``serving start`` does (``serving.listen``:
listening sockets without SO_REUSEPORT), before a worker starts or a model loads. No other
socket, whoever owns it, can then bind either port, with SO_REUSEPORT or a more specific address
of the same family. The workers listen on nothing public:

* **REST.** The front accepts each connection and hands its descriptor to the next ready worker,
  round robin, over that worker's Unix socket pair (SCM_RIGHTS). The worker serves it as if it
  had accepted it. After the hand-over the supervisor is out of the way: bytes go straight
  between the client and the worker. Round robin gives each worker every N-th connection, keep-
  alive clients included (the kernel's SO_REUSEPORT hash only spread them by chance).
* **gRPC.** gRPC from Python cannot serve a descriptor it did not accept, so each worker's gRPC
  server listens on a Unix socket in a private directory (mode 0700) and the front relays each
  TCP connection to the next ready worker's socket, bytes both ways, with flow control. That is
  one more hop, in the supervisor's process (measured in docs/serving.md).

A worker becomes ready when it says so on its pair (models loaded, REST and gRPC started); until
one is, connections wait in the kernel's queue. A worker whose pair closes (it exited) gets no
more connections. Written by hand because no library passes accepted sockets between processes
from an asyncio loop; the relay is asyncio's own protocol/transport flow control.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("serving.group")

READY = b"R"  # a worker to the front: models loaded, REST and gRPC serving
CONNECTION = b"c"  # the front to a worker: one accepted REST connection (its descriptor attached)
ACCEPT_BATCH = 64  # connections accepted per wake-up before the loop runs anything else


@dataclass
class WorkerLink:
    """The supervisor's end of one worker's pair, and where that worker's gRPC server listens."""

    pair: socket.socket
    grpc_path: str | None = None
    ready: bool = False
    handed: int = field(default=0)  # REST connections handed over
    relayed: int = field(default=0)  # gRPC connections relayed


class _Relay(asyncio.Protocol):
    """One side of a relayed gRPC connection: what it receives, its peer's transport writes.
    A peer that cannot keep up pauses this side's reading (asyncio's write buffer limits)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Relay | None = None
        self.eof = False
        self.early: list[bytes] = []  # received before the peer was linked

    def link(self, peer: _Relay) -> None:
        self.peer, peer.peer = peer, self
        for side in (self, peer):
            if side.early and side.peer is not None and side.peer.transport is not None:
                side.peer.transport.write(b"".join(side.early))
            side.early.clear()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.peer is None or self.peer.transport is None:
            self.early.append(data)  # a worker's HTTP/2 settings can beat the link
            return
        self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None or peer.eof:
            self._close_both()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
        return True  # half-closed: the other direction may still carry data

    def connection_lost(self, exc: Exception | None) -> None:
        self._close_both()

    def _close_both(self) -> None:
        for side in (self, self.peer):
            if side is not None and side.transport is not None:
                side.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _ClientSide(_Relay):
    """A gRPC client's connection: reading waits until a worker's side is linked."""

    def __init__(self, on_made: Callable[[_ClientSide], None]) -> None:
        super().__init__()
        self._on_made = on_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()
        self._on_made(self)


class GroupFront:
    """Owns the group's listening sockets and hands their connections to ready workers, in a
    thread with its own event loop (``start``; ``stop_accepting`` and ``close`` from any
    thread)."""

    def __init__(self, rest: socket.socket, grpc: socket.socket | None,
                 workers: list[WorkerLink]) -> None:
        self.rest = rest
        self.grpc = grpc
        self.workers = workers
        self._next = 0
        self._accepting = False
        self._closed_listeners = False
        self._grpc_server: asyncio.base_events.Server | None = None
        self._grpc_started = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="serving-group-front", daemon=True)
        self._started = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> GroupFront:
        self._thread.start()
        self._started.wait()
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self.rest.setblocking(False)
        for link in self.workers:
            link.pair.setblocking(False)
            self._loop.add_reader(link.pair.fileno(), self._on_worker_message, link)
        self._loop.call_soon(self._started.set)
        self._loop.run_forever()

    def stop_accepting(self) -> None:
        """Close both listening sockets (the ports are free again); relayed connections go on
        until their worker closes them, so workers can drain."""
        if self._thread.is_alive():
            done = threading.Event()

            def close() -> None:
                self._close_listeners()
                done.set()

            self._loop.call_soon_threadsafe(close)
            done.wait(5.0)
        else:
            self._close_listeners()

    def close(self) -> None:
        """Stop the loop and close everything it holds."""
        self.stop_accepting()
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5.0)
        for link in self.workers:
            link.pair.close()

    def _close_listeners(self) -> None:
        if self._closed_listeners:
            return
        self._closed_listeners = True
        if self._accepting:
            self._loop.remove_reader(self.rest.fileno())
            self._accepting = False
        self.rest.close()
        if self._grpc_server is not None:
            self._grpc_server.close()  # closes its socket
        elif self.grpc is not None:
            self.grpc.close()

    # -- workers -------------------------------------------------------------------------------

    def _ready(self) -> list[WorkerLink]:
        return [link for link in self.workers if link.ready]

    def _pick(self) -> WorkerLink | None:
        ready = self._ready()
        if not ready:
            return None
        self._next = (self._next + 1) % len(ready)
        return ready[self._next]

    def _on_worker_message(self, link: WorkerLink) -> None:
        try:
            data = link.pair.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the worker exited (or closed its end): no more connections for it
            self._loop.remove_reader(link.pair.fileno())
            link.ready = False
        elif READY in data and not link.ready:
            link.ready = True
            log.info("worker %d of %d ready", self.workers.index(link) + 1, len(self.workers))
        self._listen_if_ready()

    def _listen_if_ready(self) -> None:
        if self._closed_listeners:
            return
        any_ready = bool(self._ready())
        if any_ready and not self._accepting:
            self._loop.add_reader(self.rest.fileno(), self._accept_rest)
            self._accepting = True
        elif not any_ready and self._accepting:  # connections wait in the kernel's queue
            self._loop.remove_reader(self.rest.fileno())
            self._accepting = False
        if any_ready and self.grpc is not None and not self._grpc_started:
            self._grpc_started = True
            task = self._loop.create_task(self._serve_grpc(self.grpc))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- REST: hand the descriptor over --------------------------------------------------------

    def _accept_rest(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self.rest.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, say: the next wake-up retries
                log.warning("cannot accept a REST connection: %s", exc)
                return
            with conn:
                self._hand_over(conn)

    def _hand_over(self, conn: socket.socket) -> None:
        for _ in range(len(self.workers)):
            link = self._pick()
            if link is None:
                break
            try:
                socket.send_fds(link.pair, [CONNECTION], [conn.fileno()])
            except BlockingIOError:  # its pair is full (a stalled loop): the next one takes it
                continue
            except OSError as exc:  # gone: the next worker takes it, and it gets no more
                log.warning("worker %d did not take a connection (%s); passing it to another",
                            self.workers.index(link) + 1, exc)
                link.ready = False
                continue
            link.handed += 1
            return
        log.warning("no ready worker to take a REST connection; it is closed")
        self._listen_if_ready()

    # -- gRPC: relay the bytes -----------------------------------------------------------------

    async def _serve_grpc(self, sock: socket.socket) -> None:
        if self._closed_listeners:
            return
        self._grpc_server = await self._loop.create_server(self._relay_client, sock=sock,
                                                           backlog=ACCEPT_BATCH)

    def _relay_client(self) -> _ClientSide:
        return _ClientSide(self._on_client)

    def _on_client(self, client: _ClientSide) -> None:
        task = self._loop.create_task(self._connect_worker(client))
        self._tasks.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._tasks.discard)

    async def _connect_worker(self, client: _Relay) -> None:
        assert client.transport is not None
        for _ in range(len(self.workers)):
            link = self._pick()
            if link is None or link.grpc_path is None:
                break
            try:
                _, upstream = await self._loop.create_unix_connection(_Relay, link.grpc_path)
            except OSError as exc:
                log.warning("worker %d's gRPC socket refused a connection (%s)",
                            self.workers.index(link) + 1, exc)
                continue
            if client.transport.is_closing():  # the client left while we connected
                with contextlib.suppress(Exception):
                    upstream.transport.close()  # type: ignore[union-attr]
                return
            client.link(upstream)
            link.relayed += 1
            client.transport.resume_reading()
            return
        log.warning("no ready worker to take a gRPC connection; it is closed")
        client.transport.close()
