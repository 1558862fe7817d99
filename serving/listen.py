"""Owning the server's port: claimed before any model loads, shared only with the group's workers.

``serving start`` claims its REST port first thing (``claim``): a bound, listening socket with
SO_REUSEADDR (a restart binds despite TIME_WAIT connections) and without SO_REUSEPORT, so no
other socket, whoever owns it, can bind the port while it is held. A clash is reported at once,
before TensorFlow is imported or a model loaded (it took ~6 s of loading before).

``serving start --workers N``: the supervisor claims the socket and its workers inherit it
(``WORKER_FD_ENV`` names the descriptor); each worker accepts on that same socket once its models
are loaded. The kernel hands each connection to one of the processes blocked in accept. Nobody
outside the group can join: a second group, or any other process, gets EADDRINUSE (with
SO_REUSEPORT, which this replaces, any process of the same user could bind the port and the
kernel split clients between the two groups, tokens and models included).

When a process dies: the socket stays open while any process of the group holds it. A worker
that dies makes the supervisor stop the others (their exit closes it); if the supervisor is
killed (SIGKILL), its workers keep the socket and go on serving until they are stopped, and
the port is free again once the last of them exits. A stale claim cannot outlive its processes:
the kernel closes the socket with them (no lock file to clean up).

gRPC cannot adopt a socket from Python, so ``--workers`` still binds the gRPC port with
SO_REUSEPORT in each worker. The supervisor first checks the port is free with a plain bind
(``check_free``), then holds it for the group's lifetime (``hold_for_group``): a bound, never
listening SO_REUSEPORT socket without SO_REUSEADDR. The kernel lets the workers' SO_REUSEPORT
binds join it, while any bind without SO_REUSEPORT (a second group's check, a plain server)
fails with EADDRINUSE, from the moment the group starts, not only once a worker has loaded its
models and listens (a second group started during those seconds used to join). The placeholder
never listens, so the kernel never hands it a connection. What remains: a process of the same
user that sets SO_REUSEPORT itself can join the gRPC port. That is no boundary the kernel keeps
anyway (the same user can read the group's token from /proc or ptrace it); a second
``serving start`` never does it.
"""

from __future__ import annotations

import errno
import os
import socket

WORKER_FD_ENV = "SERVING_LISTEN_FD"  # set by the supervisor for its workers (serving.workers)
LISTEN_BACKLOG = 1024


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _in_use(host: str, port: int, exc: OSError, what: str) -> OSError:
    if exc.errno == errno.EADDRINUSE:
        return OSError(errno.EADDRINUSE, f"cannot listen for {what} on {host}:{port}: the port "
                       "is in use by another process (another `serving start`, or a worker "
                       "group); stop it or pick another port")
    return OSError(exc.errno, f"cannot listen for {what} on {host}:{port} "
                   f"({exc.strerror or exc})")


def claim(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` no other socket can join (OSError naming the port
    when it is taken). Port 0: the kernel picks a free one."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise _in_use(host, port, exc, "REST") from None
    return sock


def inherited() -> socket.socket | None:
    """The group's listening socket in a worker (``WORKER_FD_ENV``), else None."""
    fd = os.environ.get(WORKER_FD_ENV)
    if not fd:
        return None
    return socket.socket(fileno=int(fd))


def claim_or_inherit(host: str, port: int) -> socket.socket:
    """A worker's inherited socket, or a freshly claimed one."""
    return inherited() or claim(host, port)


def check_free(host: str, port: int, what: str = "gRPC") -> None:
    """OSError when ``host:port`` cannot be bound without SO_REUSEPORT (someone listens on it,
    SO_REUSEPORT or not). The check closes its socket again: a later bind can still race it."""
    if not port:
        return
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen(1)
        except OSError as exc:
            raise _in_use(host, port, exc, what) from None


def hold_for_group(host: str, port: int, what: str = "gRPC") -> socket.socket | None:
    """Check ``host:port`` is free, then hold it for a worker group whose processes bind it with
    SO_REUSEPORT themselves (see the module doc). None for port 0 (each picks its own)."""
    if not port:
        return None
    check_free(host, port, what)
    holder = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # and no SO_REUSEADDR
        holder.bind((host, port))
    except OSError as exc:
        holder.close()
        raise _in_use(host, port, exc, what) from None
    return holder
