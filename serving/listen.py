"""Owning the server's ports: claimed before any model loads, joined by no other socket.

``serving start`` claims its REST port first thing (``claim``): a bound, listening socket with
SO_REUSEADDR (a restart binds despite TIME_WAIT connections) and without SO_REUSEPORT. While it
is held, no other socket, whoever owns it, can bind the port: not with SO_REUSEPORT (the kernel
admits a socket to a port's SO_REUSEPORT group only when every socket on it set the option), not
on a more specific address of the same family (``127.0.0.1`` when the claim is on ``0.0.0.0``).
A clash is reported at once, before TensorFlow is imported or a model loaded (it took ~6 s of
loading before).

A single server checks its gRPC port the same way before loading (``check_free``) and binds it
once its models are loaded (gRPC from Python binds its own socket, without SO_REUSEPORT).
``serving start --workers N``: the supervisor claims both ports with ``claim`` and hands their
connections to its workers (``serving.group_front``), which listen on nothing public. So a
second group or server is refused at its claim, before loading, and no process can take part of
a group's traffic by joining its port (issue 22: an earlier SO_REUSEPORT group let a same-user
process join by a more specific address, another BPF program or the gRPC port).

The kernel closes a claim with its process: there is no lock file to clean after a crash.
"""

from __future__ import annotations

import errno
import socket

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


def claim(host: str, port: int, what: str = "REST") -> socket.socket:
    """A listening socket on ``host:port`` no other socket can join (OSError naming the port
    and ``what`` it is for when it is taken). Port 0: the kernel picks a free one."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise _in_use(host, port, exc, what) from None
    return sock


def check_free(host: str, port: int, what: str = "gRPC") -> None:
    """OSError when ``host:port`` cannot be claimed (someone listens on it, SO_REUSEPORT or
    not). The check closes its socket again: a later bind can still race it."""
    if not port:
        return
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen(1)
        except OSError as exc:
            raise _in_use(host, port, exc, what) from None
