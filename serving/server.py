"""Wiring: a manager on a source, an executor for model calls, the app; run it or host it in a thread.

``serve`` is what ``serving start`` runs: it serves until SIGTERM/SIGINT, then stops taking new
connections, lets requests in flight finish (up to ``grace_s``; see ``serving.drain``), and the
caller unloads the models.
``BackgroundServer`` hosts the same app on a loopback port in a thread (tests, benchmarks).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web

from serving.app import DRAIN_KEY, ServerConfig, make_app
from serving.batching import BatchingConfig
from serving.manager import ModelManager, Source
from serving.metrics import Metrics
from serving.servable import Servable, load_servable

log = logging.getLogger("serving.server")


@dataclass
class Runtime:
    manager: ModelManager
    metrics: Metrics
    executor: ThreadPoolExecutor

    def close(self) -> None:
        self.manager.stop()
        self.executor.shutdown(wait=True, cancel_futures=False)


def build_runtime(source: Source, batching: BatchingConfig | None = None,
                  poll_interval: float = 0.5, workers: int = 4,
                  freeze_heap: bool = True) -> Runtime:
    """``freeze_heap``: after every load/unload, hide the loaded models from Python's cyclic
    garbage collector (``manager.settle_heap``); see docs/serving.md, Performance."""
    metrics = Metrics()
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="model")
    batching = batching or BatchingConfig()

    def loader(name: str, version: int, path: str) -> Servable:
        return load_servable(name, version, path, executor, batching, metrics.on_batch)

    manager = ModelManager(source, loader, poll_interval, on_change=metrics.on_state,
                           freeze_heap=freeze_heap)
    return Runtime(manager, metrics, executor)


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

    One intra-op thread made one-image calls faster on the 2-core VM (1.0 ms vs 1.6-1.9 ms) but
    runs a big batch on one core, so the default stays TF's (docs/serving.md, Performance).
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


async def serve(runtime: Runtime, config: ServerConfig, grace_s: float = 30.0,
                stop: asyncio.Event | None = None,
                started: threading.Event | None = None, bound: list[int] | None = None) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is None)."""
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
    app = make_app(runtime.manager, config, runtime.metrics)
    # The drain below waits for handlers; aiohttp's own wait is then only a backstop.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=min(grace_s, 1.0),
                           handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
    await site.start()
    server = getattr(site, "_server", None)
    port = config.port
    if server is not None and server.sockets:
        port = server.sockets[0].getsockname()[1]
    if bound is not None:
        bound.append(port)
    log.info("serving on http://%s:%d", config.host, port)
    if started is not None:
        started.set()
    try:
        await stop.wait()
        drain = app[DRAIN_KEY]
        log.info("shutting down: finishing %d request(s) in flight (up to %g s; Ctrl-C again "
                 "to stop now)", drain.active, grace_s)
        await site.stop()  # no new connections; open ones keep streaming their bodies
        if not await drain.wait_idle(grace_s, abort=force):
            log.warning("closing %d request(s) still running", drain.active)
    finally:
        await runner.cleanup()  # closes the (now idle) connections
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
