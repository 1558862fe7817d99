"""``serving start --workers N``: N server processes serving one port.

One process serves REST (and gRPC) from one Python interpreter: under load its event loop and
the JSON work hold one GIL while the other core idles. The supervisor claims the port for the
group before it starts any worker (``serving.listen.claim_group``): one SO_REUSEPORT listening
socket per worker, steered so that the kernel spreads new connections evenly over the workers;
a second group or server is refused (the limits for a same-user process that sets SO_REUSEPORT
itself are in ``serving.listen``). Each worker is a
complete server (its own model manager, registry poll and batching), loads every model (N times
the model memory) and has its own /metrics (a scrape sees one worker). Measured with the steered
group on this 2-core machine (``serving_bench.py``, REST, concurrency 32, keep-alive, two runs
alternated): one process 1,904 and 1,575 req/s, two 2,488 and 2,203 (1.31x, 1.40x).

The supervisor here only starts the workers, forwards SIGTERM/SIGINT to them (each drains as a
single server does) and stops them all if one fails, exiting with the worst status.

A worker accepts only once its models are loaded (``wait_for_first_sync``): a worker accepting
while still loading would answer its connections with 503 while the others were ready (a load
balancer's readiness probe, answered by a ready worker, cannot see that). Until then its share
of the connections waits in its socket's queue. What happens when a process dies is in
``serving.listen``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

from serving.listen import WORKER_FD_ENV, claim_group, hold_for_group

log = logging.getLogger("serving.workers")

FIRST_SYNC_WAIT_S = 600.0  # a worker listens anyway after this, answering 503 until ready


def wait_for_first_sync(synced: threading.Event, limit_s: float = FIRST_SYNC_WAIT_S,
                        tell_every_s: float = 10.0) -> bool:
    """Block until the model manager's first sync (its loads included) is done; False, with a
    warning, if ``limit_s`` passes first (an unreadable registry, say)."""
    deadline = time.monotonic() + limit_s
    while not synced.wait(max(min(tell_every_s, deadline - time.monotonic()), 0.0)):
        if time.monotonic() >= deadline:
            log.warning("worker %d: models still not loaded after %g s; listening anyway "
                        "(ready answers 503 until they are)", os.getpid(), limit_s)
            return False
        log.info("worker %d: loading the deployed models before listening", os.getpid())
    return True


def worker_argv(argv: list[str]) -> list[str]:
    """``serving start`` arguments for one worker: ``--workers`` dropped, ``--reuse-port`` on
    (a worker: accept on the inherited socket once loaded; gRPC with SO_REUSEPORT)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        out.append(arg)
    return [*out, "--reuse-port"]


def supervise(count: int, argv: list[str], host: str = "127.0.0.1", port: int = 0,
              grpc_port: int = 0) -> int:
    """Run ``count`` workers of ``python -m serving <argv>`` until they exit; their worst code.
    The port is claimed first (OSError naming it when taken), before any worker loads a model;
    each worker inherits its own socket of the group."""
    sockets = claim_group(host, port, count)
    try:
        grpc_hold = hold_for_group(host, grpc_port)  # the workers' SO_REUSEPORT binds join it
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    command = [sys.executable, "-m", "serving", *worker_argv(argv)]
    workers = []
    for sock in sockets:  # one socket each; the supervisor keeps none (a dead worker's queue
        sock.set_inheritable(True)  # must leave the group with it)
        workers.append(subprocess.Popen(command, env=dict(os.environ, **{
            WORKER_FD_ENV: str(sock.fileno())}), pass_fds=(sock.fileno(),)))
        sock.close()
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while any(proc.poll() is None for proc in workers):
        failed = [p for p in workers if p.poll() not in (None, 0)]
        if failed and not stopping:
            print(f"error: a serving worker exited with status {failed[0].returncode}; "
                  "stopping the others", file=sys.stderr)
            forward(signal.SIGTERM, None)
        time.sleep(0.2)  # polling the workers: wait() on one would miss the others
    if grpc_hold is not None:
        grpc_hold.close()
    return max(proc.returncode or 0 for proc in workers)
