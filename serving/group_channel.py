"""A ``--workers`` worker's end of its group: connections arrive over a Unix socket pair.

The supervisor owns the ports (``serving.group_front``). A worker listens on nothing public: it
receives each accepted REST connection's descriptor over its pair, serves its gRPC API on a Unix
socket in the group's private directory (the front relays TCP to it), and says ``READY`` on the
pair once its models are loaded and both are serving. When the pair closes (the supervisor
exited, even by SIGKILL) the worker drains and stops as on SIGTERM: nothing else would ever give
it a connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable

from serving.group_front import READY

log = logging.getLogger("serving.group")

PAIR_FD_ENV = "SERVING_GROUP_FD"  # the worker's end of its pair (set by serving.workers)
GRPC_PATH_ENV = "SERVING_GROUP_GRPC"  # where the worker's gRPC server listens (Unix socket)
MAX_FDS_PER_READ = 64


class GroupChannel:
    """A worker's pair: ``serve_connections`` feeds REST connections to a protocol factory."""

    def __init__(self, pair: socket.socket, grpc_path: str | None) -> None:
        self.pair = pair
        self.grpc_path = grpc_path
        self.sockets: list[socket.socket] = []  # aiohttp's site looks here: nothing public
        self._loop: asyncio.AbstractEventLoop | None = None
        self._protocol: Callable[[], asyncio.Protocol] | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._reading = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> GroupChannel | None:
        """This process's channel when it is a worker of a group, else None."""
        env = dict(os.environ) if env is None else env
        fd = env.get(PAIR_FD_ENV)
        if not fd:
            return None
        return cls(socket.socket(fileno=int(fd)), env.get(GRPC_PATH_ENV) or None)

    @property
    def grpc_address(self) -> str | None:
        return f"unix:{self.grpc_path}" if self.grpc_path else None

    def serve_connections(self, loop: asyncio.AbstractEventLoop,
                          protocol: Callable[[], asyncio.Protocol]) -> GroupChannel:
        """Start taking connections from the pair on ``loop`` (the site's ``_server``)."""
        self._loop, self._protocol = loop, protocol
        self.pair.setblocking(False)
        loop.add_reader(self.pair.fileno(), self._receive)
        self._reading = True
        return self

    def announce_ready(self) -> None:
        """Tell the front this worker takes connections (models loaded, REST and gRPC up)."""
        self.pair.setblocking(True)
        try:
            self.pair.sendall(READY)
        finally:
            self.pair.setblocking(False)

    def _receive(self) -> None:
        assert self._loop is not None and self._protocol is not None
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.pair, 4096, MAX_FDS_PER_READ)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("the group's channel failed (%s); stopping", exc)
                data, fds = b"", []
            if not data and not fds:
                self.close()
                log.warning("the group's supervisor is gone; draining and stopping")
                os.kill(os.getpid(), signal.SIGTERM)
                return
            for fd in fds:
                conn = socket.socket(fileno=fd)
                conn.setblocking(False)
                task = self._loop.create_task(
                    self._loop.connect_accepted_socket(self._protocol, conn))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """No new connections (aiohttp's ``site.stop``); those being served go on."""
        if self._loop is not None and self._reading:
            self._reading = False
            self._loop.remove_reader(self.pair.fileno())

    async def wait_closed(self) -> None:
        return None
