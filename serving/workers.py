"""``serving start --workers N``: N server processes behind one port.

One process serves REST (and gRPC) from one Python interpreter: under load its event loop and
the JSON work hold one GIL while the other core idles. The supervisor claims both ports for the
group before it starts any worker, as a single server does (``serving.listen``: no SO_REUSEPORT,
so no other process can join either port), and hands the connections to the workers
(``serving.group_front``: REST descriptors over a Unix socket pair, gRPC relayed to each worker's
private Unix socket). A second group or server is refused at its own claim, before loading.
Each worker is a complete server (its own model manager, registry poll and batching), loads
every model (N times the model memory) and has its own /metrics (a scrape sees one worker).

The supervisor starts the workers, forwards SIGTERM/SIGINT to them after closing its listening
sockets (each worker drains as a single server does; relayed gRPC calls finish) and stops them
all if one fails, exiting with the worst status.

A worker gets connections only once its models are loaded and it has said so: one answering 503
while the others were ready would fool a load balancer's readiness probe (answered by a ready
worker). Until a first worker is ready, connections wait in the kernel's queue.

When a process dies:

* a worker: its pair closes, the front stops handing it connections (those it held are reset),
  and the supervisor stops the others and exits with the worker's status;
* the supervisor, even by SIGKILL: the kernel closes its listening sockets, so both ports are
  free at once; each worker sees its pair close, drains the connections it has and exits. No
  lock file or claim outlives the processes. The private gRPC directory under the temporary
  directory (``serving-group-<pid>-*``) is left behind by a SIGKILL only; the next group started
  by the same user removes those whose supervisor is gone (``sweep_stale_group_dirs``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from types import FrameType

from contracts.publish import pid_alive
from serving.group_channel import GRPC_PATH_ENV, PAIR_FD_ENV
from serving.group_front import GroupFront, WorkerLink
from serving.listen import claim, hold_other_family

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
    """``serving start`` arguments for one worker: ``--workers`` dropped (a worker learns it is
    one from its environment, ``serving.group_channel``)."""
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
    return out


GROUP_DIR_PREFIX = "serving-group-"
_GROUP_DIR = re.compile(re.escape(GROUP_DIR_PREFIX) + r"(\d+)-\w+")


def _listening(directory: str) -> bool:
    """Whether a socket in ``directory`` still accepts connections (a worker is alive there)."""
    for name in os.listdir(directory):
        if not name.endswith(".sock"):
            continue
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            try:
                probe.connect(os.path.join(directory, name))
            except OSError:
                continue
            return True
    return False


def sweep_stale_group_dirs(root: str | None = None) -> list[str]:
    """Remove this user's ``serving-group-<pid>-*`` directories whose supervisor is gone (killed
    by SIGKILL before its cleanup ran); returns their paths. Kept when the pid is alive (a reused
    pid too) or a socket inside still accepts connections (a group whose pid this process cannot
    see, in another PID namespace sharing the directory): wrongly kept is harmless, wrongly
    removed would break a live group's gRPC."""
    root = root or tempfile.gettempdir()
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        match = _GROUP_DIR.fullmatch(entry.name)
        try:
            if (match is None or not entry.is_dir(follow_symlinks=False)
                    or entry.stat(follow_symlinks=False).st_uid != os.getuid()
                    or pid_alive(int(match.group(1))) or _listening(entry.path)):
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    return removed


def supervise(count: int, argv: list[str], host: str = "127.0.0.1", port: int = 0,
              grpc_port: int = 0, grpc_required: bool = True) -> int:
    """Run ``count`` workers of ``python -m serving <argv>`` until they exit; their worst code.
    Both ports are claimed first (OSError naming the port when taken), before any worker loads
    a model; the front then hands their connections to the ready workers. ``grpc_required``:
    False when --grpc-port was left at its default, so that the port taken only warns."""
    rest = claim(host, port, "REST")
    guards = [hold_other_family(host, port)]  # see serving.listen
    grpc = None
    if grpc_port:
        try:
            grpc = claim(host, grpc_port, "gRPC")
            guards.append(hold_other_family(host, grpc_port))
        except OSError as exc:
            if grpc_required:
                rest.close()
                raise
            if grpc is not None:
                grpc.close()
                grpc = None
            log.warning("%s; serving REST only", exc)
    for path in sweep_stale_group_dirs():
        log.info("removed %s, left by a serving group that was killed", path)
    # mode 0700: only this user connects; the pid lets a later group tell whether it is stale
    private = tempfile.mkdtemp(prefix=f"{GROUP_DIR_PREFIX}{os.getpid()}-")
    links: list[WorkerLink] = []
    ends: list[socket.socket] = []
    for index in range(count):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        links.append(WorkerLink(ours, os.path.join(private, f"grpc-{index}.sock")
                                if grpc is not None else None))
        ends.append(theirs)
    front = GroupFront(rest, grpc, links).start()
    command = [sys.executable, "-m", "serving", *worker_argv(argv)]
    workers = []
    try:
        for link, end in zip(links, ends, strict=True):
            env = dict(os.environ, **{PAIR_FD_ENV: str(end.fileno())})
            if link.grpc_path:
                env[GRPC_PATH_ENV] = link.grpc_path
            workers.append(subprocess.Popen(command, env=env, pass_fds=(end.fileno(),)))
            end.close()  # the worker's end: a dead worker's pair then reads as closed
        return _wait(workers, front)
    finally:
        for end in ends:
            end.close()
        front.close()
        for guard in guards:
            if guard is not None:
                guard.close()
        shutil.rmtree(private, ignore_errors=True)


def _wait(workers: list[subprocess.Popen[bytes]], front: GroupFront) -> int:
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        front.stop_accepting()  # first: no new connection reaches a draining worker
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
    return max(proc.returncode or 0 for proc in workers)
