"""Wiring: a manager on a source, an executor for model calls, the app; run it or host it in a thread.

``serve`` is what ``serving start`` runs: it serves until SIGTERM/SIGINT, then stops taking new
connections, lets requests in flight finish (up to ``grace_s``; see ``serving.drain``), and the
caller unloads the models.
``BackgroundServer`` hosts the same app on a loopback port in a thread (tests, benchmarks).
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import resource
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from datasources.images import load_pillow
from serving import image_formats
from serving.app import CTX_KEY, DRAIN_KEY, ServerConfig, make_app
from serving.batching import BatchingConfig
from serving.drain import Drain
from serving.manager import ModelManager, Source
from serving.metrics import Metrics
from serving.servable import Servable, load_servable

if TYPE_CHECKING:
    from serving.group_channel import GroupChannel

log = logging.getLogger("serving.server")


@dataclass
class Runtime:
    manager: ModelManager
    metrics: Metrics
    executor: ThreadPoolExecutor
    drain: Drain  # requests in progress (REST and gRPC): SIGTERM waits on it, batchers ask it

    def close(self) -> None:
        self.manager.stop()
        self.executor.shutdown(wait=True, cancel_futures=False)


def build_runtime(source: Source, batching: BatchingConfig | None = None,
                  poll_interval: float = 0.5, workers: int | None = None,
                  freeze_heap: bool = True) -> Runtime:
    """``freeze_heap``: after every load/unload, hide the loaded models from Python's cyclic
    garbage collector (``manager.settle_heap``); see docs/serving.md, Performance."""
    metrics = Metrics()
    # model calls: at least one thread per core, for the batcher's parallel slices
    executor = ThreadPoolExecutor(max_workers=workers or max(4, os.cpu_count() or 1),
                                  thread_name_prefix="model")
    batching = batching or BatchingConfig()
    drain = Drain()

    def alone() -> bool:
        """The calling request is the only work in the server: the only request in progress,
        and nothing else waiting to run on the event loop. Under load other requests' callbacks
        sit in the loop's ready queue before their handlers start (and count in ``drain``); an
        event loop without CPython's ``_ready`` queue never runs requests inline."""
        if drain.active > 1:
            return False
        ready = getattr(asyncio.get_running_loop(), "_ready", None)
        return ready is not None and not ready

    def loader(name: str, version: int, path: str) -> Servable:
        return load_servable(name, version, path, executor, batching, metrics.on_batch, alone)

    manager = ModelManager(source, loader, poll_interval, on_change=metrics.on_state,
                           freeze_heap=freeze_heap)
    return Runtime(manager, metrics, executor, drain)


GC_GEN0_THRESHOLD = 20_000


def configure_gc(gen0: int = GC_GEN0_THRESHOLD) -> None:
    """Run the young-generation collection every ``gen0`` container allocations, not every 700.

    One predict request allocates ~1,600 lists (the parsed JSON and its flattening) that die by
    reference counting when it ends. With CPython's default, two or three collections ran in the
    middle of every request and traversed them while alive: ~20% of parsing time. With 20,000,
    collections run every ~12 requests and find the garbage already freed. Process-wide, so only
    ``serving start`` calls it (not tests hosting the app in their own process).
    """
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 1), gen1, gen2)


def configure_tf_threads(intra: int = 0, inter: int = 0) -> bool:
    """Size TensorFlow's thread pools (0 = TF's default); only possible before TF runs an op.

    One intra-op thread made a one-image call 0.48 ms against 0.75-0.89 ms with TF's pool on
    the 2-core VM (server p50 1.5 vs 1.8 ms), but concurrency-32 throughput 10-20% lower (the
    batch's model call is on the critical path), so the default stays TF's (docs/serving.md).
    Returns False (and changes nothing) when TF is already initialised, e.g. in a test process.
    """
    if intra <= 0 and inter <= 0:
        return True
    import tensorflow as tf

    try:
        if intra > 0:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
        if inter > 0:
            tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError as exc:  # "... cannot be modified after initialization"
        log.warning("TensorFlow thread pools left as they are: %s", exc)
        return False
    return True


# -- connections: header-read timeout, a cap, quiet accept errors -------------------------------
LISTEN_BACKLOG = 1024  # the kernel's accept queue (capped by net.core.somaxconn)
# Connections asyncio accepts per wake-up: each takes a descriptor before the guard can close an
# older one, and the closes land a loop iteration or two later, so FD_RESERVE must hold a few
# batches (32 still hit EMFILE with 300 clients under a 256 limit; 16 did not).
ACCEPT_BATCH = 16
FD_RESERVE = 64  # descriptors kept for loading new versions, the executor, the registry poll
MAX_CONNECTIONS_CEILING = 10_000


def open_fds() -> int:
    """File descriptors this process has open now (0 where /proc is not available)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def default_max_connections() -> int:
    """Open connections allowed: the fd limit minus what the process already holds (TensorFlow,
    the models, logs) and a reserve, so accept() never hits EMFILE because of clients alone (on
    EMFILE asyncio stops accepting for a whole second), at most ``MAX_CONNECTIONS_CEILING``."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS_CEILING
    return max(8, min(soft - open_fds() - FD_RESERVE, MAX_CONNECTIONS_CEILING))


def _busy_response() -> bytes:
    body = (b'{"error":"the server has too many open connections; retry in a moment, or reuse '
            b'a keep-alive connection"}')
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


BUSY_RESPONSE = _busy_response()


class ConnectionGuard:
    """Shared by a listener's connections: the open ones (oldest first), the cap, counters."""

    def __init__(self, max_connections: int, header_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.connections: dict[GuardedRequestHandler, None] = {}  # insertion = connect order
        self.refused = 0
        self.evicted = 0
        self.header_timeouts = 0

    @property
    def open(self) -> int:
        return len(self.connections)

    def make_room(self) -> bool:
        """At the cap, close the oldest connection with no request in progress (idle
        keep-alive, or still sending its request head: what slow clients hold) so a new one
        can be served, like nginx reusing keep-alive connections; False when every
        connection is busy with a request."""
        if self.open < self.max_connections:
            return True
        for handler in self.connections:
            if handler.waiting_for_request():
                self.evicted += 1
                handler.evict()
                return True
        return False


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection protocol plus a header-read timeout and a connection cap.

    aiohttp has no header-read timeout: its ``keepalive_timeout`` is armed when a connection
    opens and after each response, and a client trickling a request line keeps a connection
    (and a file descriptor) for all of it. So: a timer starts when a connection opens, and when
    the first byte of a request arrives on an idle kept-alive connection; if no complete
    request head has been parsed ``header_timeout_s`` later, the connection is closed. Idle
    kept-alive connections are still aiohttp's (``keepalive_timeout``), and a slow body is the
    app's request deadline (``ServerConfig.timeout_s``).

    At ``max_connections`` open ones, the oldest connection waiting for a request is closed to
    make room (``ConnectionGuard.make_room``); when all are busy, a new connection gets a canned
    503 and is closed before aiohttp sees it (no parser, no task).

    Reads aiohttp internals (``_waiter``: the handler loop waits for a request;
    ``_request_count``: request heads parsed); tests/serving/test_hardening.py covers both.
    """

    def __init__(self, manager: web.Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._heads_at_arm = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        if not guard.make_room():
            self._refused = True
            guard.refused += 1
            transport.write(BUSY_RESPONSE)  # type: ignore[attr-defined]
            transport.close()
            return
        guard.connections[self] = None
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        self._guard.connections.pop(self, None)
        self._cancel_head_timer()
        super().connection_lost(exc)

    def waiting_for_request(self) -> bool:
        """No request in progress: idle, or its head still arriving."""
        return self._head_timer is not None or getattr(self, "_waiter", None) is not None

    def evict(self) -> None:
        self._guard.connections.pop(self, None)
        self._cancel_head_timer()
        self.force_close()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and data and getattr(self, "_waiter", None) is not None:
            self._arm_head_timer()  # first bytes of a request on an idle connection
        super().data_received(data)
        if self._head_timer is not None and self._request_count != self._heads_at_arm:
            self._cancel_head_timer()  # a whole request head arrived in time

    def _arm_head_timer(self) -> None:
        if self._guard.header_timeout_s <= 0:
            return
        self._heads_at_arm = self._request_count
        self._head_timer = self._loop.call_later(self._guard.header_timeout_s,
                                                 self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._request_count == self._heads_at_arm and self.transport is not None:
            self._guard.header_timeouts += 1
            self.force_close()


class GuardedTCPSite(web.TCPSite):
    """``web.TCPSite`` whose connections are ``GuardedRequestHandler``s."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: ConnectionGuard,
                 handler_kwargs: dict[str, Any], sock: socket.socket | None = None,
                 group: GroupChannel | None = None, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.guard = guard
        self._handler_kwargs = handler_kwargs
        self._sock = sock  # a socket claimed before the models loaded (serving.listen)
        self._group = group  # a worker's channel: connections handed over, none accepted here

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; TCPSite.start would bind too
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None

        def protocol() -> GuardedRequestHandler:
            return GuardedRequestHandler(server, self.guard, loop=loop, **self._handler_kwargs)

        # asyncio accepts up to ``backlog`` connections per wake-up, each taking a descriptor
        # before the guard sees it: a small batch keeps bursts within FD_RESERVE (on EMFILE
        # asyncio stops accepting for a whole second), and a deep kernel queue behind it keeps
        # a burst of clients from losing SYNs (a 1 s retransmit each).
        if self._group is not None:
            self._server = self._group.serve_connections(loop, protocol)  # type: ignore[assignment]
            self._bound_port = self._port
            return
        if self._sock is not None:
            self._server = await loop.create_server(protocol, sock=self._sock,
                                                    backlog=ACCEPT_BATCH)
        else:
            self._server = await loop.create_server(
                protocol, self._host, self._port, backlog=ACCEPT_BATCH,
                reuse_address=self._reuse_address)
        for listening in self._server.sockets:
            with socket.socket(fileno=os.dup(listening.fileno())) as same:
                same.listen(LISTEN_BACKLOG)  # the same socket: only its queue deepens
        self._bound_port = self._server.sockets[0].getsockname()[1]


ACCEPT_LOG_INTERVAL_S = 10.0
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class AcceptErrorLog:
    """The loop's exception handler: accept() failures for lack of file descriptors are logged
    once per ``interval_s`` with a count (asyncio logged each one with a traceback: 94,194
    lines in 50 s under a 256-fd limit); everything else goes to the default handler."""

    def __init__(self, interval_s: float = ACCEPT_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.suppressed = 0
        self.total = 0
        self._last = float("-inf")

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS
                and "accept" in str(context.get("message", ""))):
            loop.default_exception_handler(context)
            return
        self.total += 1
        now = time.monotonic()
        if now - self._last < self.interval_s:
            self.suppressed += 1
            return
        log.error("cannot accept connections: %s (%d more in the last %g s); raise the file "
                  "descriptor limit (ulimit -n) or lower the connection cap",
                  exc.strerror or exc, self.suppressed, self.interval_s)
        self._last = now
        self.suppressed = 0


def import_before_loading(config: ServerConfig) -> None:
    """Import on this thread what ``serve`` would import lazily, before the model manager's
    loader thread imports TensorFlow: two threads importing at once deadlock on Python's module
    locks. gRPC's protos share tensorflow.core.*; Pillow and TensorFlow's setuptools hook both
    import xml.parsers.expat (a server hung so, LOADING its first version, in a CI run).
    ``tests/serving/test_loop_imports.py`` checks that the loop imports nothing afterwards."""
    load_pillow()  # the image decoders, whatever the pixel cap (0 imports no Pillow itself)
    image_formats.set_max_pixels(config.max_image_pixels)
    import serving.openapi  # noqa: F401 - GET /openapi.json
    if config.grpc_port:
        import grpc._utilities  # noqa: F401 - grpc's method handlers import it when registered

        import serving.grpc_server  # noqa: F401


def _grpc_bind(config: ServerConfig, group: GroupChannel | None) -> str | None:
    """Where gRPC listens: the group's private Unix socket for a worker, else the port."""
    if group is not None:
        return group.grpc_address
    if not config.grpc_port:
        return None
    from serving.grpc_server import tcp_address

    return tcp_address(config.host, config.grpc_port)


async def serve(runtime: Runtime, config: ServerConfig, grace_s: float = 30.0,
                stop: asyncio.Event | None = None,
                started: threading.Event | None = None, bound: list[int] | None = None,
                sock: socket.socket | None = None, group: GroupChannel | None = None) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is None). ``sock``: the
    listening socket ``serving.listen`` claimed, else bind here; ``group``: this process is a
    worker of ``--workers``, given its connections by the supervisor (``serving.group_front``)."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    force = asyncio.Event()  # a second signal: stop waiting for requests

    def on_signal() -> None:
        if stop.is_set():
            log.warning("second signal: closing without waiting for requests in flight")
            force.set()
        stop.set()

    handle_signals = threading.current_thread() is threading.main_thread()
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
    runtime.drain.reopen()
    image_formats.set_max_pixels(config.max_image_pixels)
    app = make_app(runtime.manager, config, runtime.metrics, runtime.drain)
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(AcceptErrorLog())
    # The drain below waits for handlers; aiohttp's own wait is then only a backstop.
    handler_kwargs: dict[str, Any] = {"access_log": None,
                                      "keepalive_timeout": config.keepalive_timeout_s}
    runner = web.AppRunner(app, shutdown_timeout=min(grace_s, 1.0), handle_signals=False,
                           **handler_kwargs)
    await runner.setup()
    guard = ConnectionGuard(config.max_connections or default_max_connections(),
                            config.header_timeout_s)
    site = GuardedTCPSite(runner, config.host, config.port, guard, handler_kwargs, sock, group,
                          reuse_address=True)
    await site.start()
    port = site.port
    if bound is not None:
        bound.append(port)
    log.info("serving on http://%s:%d%s", config.host, port,
             " (connections from the group's supervisor)" if group is not None else "")
    grpc_server = None
    grpc_bind = _grpc_bind(config, group)
    if grpc_bind:
        from serving.grpc_server import GrpcServer

        try:
            grpc_server = GrpcServer(app[CTX_KEY], grpc_bind)
        except OSError as exc:
            if config.grpc_required:
                await runner.cleanup()
                raise
            log.warning("%s; serving REST only", exc)
        if grpc_server is not None:
            await grpc_server.start()
            log.info("serving gRPC on %s", grpc_bind if group is not None
                     else f"{config.host}:{grpc_server.port}")
    if group is not None:
        group.announce_ready()
    if started is not None:
        started.set()
    try:
        await stop.wait()
        drain = app[DRAIN_KEY]
        log.info("shutting down: finishing %d request(s) in flight (up to %g s; Ctrl-C again "
                 "to stop now)", drain.active, grace_s)
        if grpc_server is not None:
            await grpc_server.begin_drain()
        await site.stop()  # no new connections; open ones keep streaming their bodies
        if not await drain.wait_idle(grace_s, abort=force):
            log.warning("closing %d request(s) still running", drain.active)
    finally:
        if grpc_server is not None:
            await grpc_server.stop(0.5)  # calls in flight were drained above
        await runner.cleanup()  # closes the (now idle) connections
        loop.set_exception_handler(previous_handler)
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class BackgroundServer:
    """The app on a loopback port, in a thread with its own event loop."""

    def __init__(self, runtime: Runtime, config: ServerConfig | None = None) -> None:
        self.runtime = runtime
        self.config = config or ServerConfig(port=0)
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._bound: list[int] = []
        self._thread = threading.Thread(target=self._run, name="serving-http", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            await serve(self.runtime, self.config, grace_s=5.0, stop=self._stop,
                        started=self._started, bound=self._bound)

        try:
            self._loop.run_until_complete(main())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self.error = exc
            self._started.set()

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread.start()
        if not self._started.wait(timeout) or self.error is not None:
            raise RuntimeError(f"the server did not start: {self.error}")
        return self

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self._bound[0]}"

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
