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

The same port number in the other address family is a different address: a process could listen
on ``[::1]:8501`` beside a server on ``127.0.0.1:8501``, and a client asking for ``localhost``
may try IPv6 first. ``hold_other_family`` closes that too: a bound, never-listening socket on the
counterpart address (``::1`` for ``127.0.0.1`` or ``localhost``, ``::`` for ``0.0.0.0``,
``127.0.0.1`` for ``::1``), without SO_REUSEADDR or SO_REUSEPORT, so nothing else binds it and a
client trying it is refused at once and falls back to the claimed address.

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


_COUNTERPART = {"127.0.0.1": "::1", "localhost": "::1", "0.0.0.0": "::", "::1": "127.0.0.1"}


def hold_other_family(host: str, port: int) -> socket.socket | None:
    """Hold ``host``'s counterpart address in the other family on ``port`` (see the module doc);
    None when ``host`` has none, the port is 0, or this machine lacks that family. The port
    taken there is an OSError naming it, as a clash on ``host`` is."""
    other = _COUNTERPART.get(host)
    if other is None or not port:
        return None
    try:
        guard = socket.socket(_family(other), socket.SOCK_STREAM)
    except OSError:  # no IPv6 here: nothing can listen there either
        return None
    try:
        if guard.family == socket.AF_INET6:
            guard.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        guard.bind((other, port))
    except OSError as exc:
        guard.close()
        if exc.errno == errno.EADDRINUSE:
            raise _in_use(other, port, exc, f"{host}:{port}'s other address family") from None
        return None  # the address does not exist here (IPv6 disabled): nobody can bind it
    return guard
