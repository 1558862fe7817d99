"""Owning the server's port: claimed before any model loads, shared only with the group's workers.

``serving start`` claims its REST port first thing (``claim``): a bound, listening socket with
SO_REUSEADDR (a restart binds despite TIME_WAIT connections) and without SO_REUSEPORT, so no
other socket, whoever owns it, can bind the port while it is held. A clash is reported at once,
before TensorFlow is imported or a model loaded (it took ~6 s of loading before).

``serving start --workers N``: the supervisor claims the port for the group (``claim_group``):
after a plain bind check (nobody is on the port), it opens N listening sockets with SO_REUSEPORT,
one per worker, and attaches a classic BPF program to the group (SO_ATTACH_REUSEPORT_CBPF) that
hands each new connection to socket ``hash % N``. Each worker inherits its own socket
(``WORKER_FD_ENV`` names the descriptor) and accepts on it once its models are loaded; the
supervisor then closes its copies. So:

* Connections are spread evenly by the kernel, keep-alive clients included. (One socket shared
  by all the workers, as issue 22 first did, left the split to whichever process woke first: 32
  connections opened at once went 32/0, 31/1 and 24/8 in three tries.)
* A second group or a plain ``serving start`` on the port is refused at its plain bind check,
  before loading, whenever a group's socket listens.
* A process that sets SO_REUSEPORT itself and binds the same address (only the same user can)
  joins the kernel's group at index N or later, which the program never returns: it gets no
  connection. SO_REUSEPORT's own rules still let a same-user process take traffic in ways no
  program of ours sees: by binding a more specific address than the group's (``127.0.0.1``
  when the group listens on ``0.0.0.0``: the kernel prefers the exact match), by another
  address family, or by attaching its own BPF program. One shared socket without SO_REUSEPORT
  (this issue's first fix) refused those too, but let the kernel's wake-up order split the
  clients (32/0, 31/1, 24/8 above). A process of the same user can read the group's token from
  /proc or ptrace it anyway; a second ``serving start`` is refused in every case.

When a process dies: a dead worker's socket leaves the group (its queued connections are reset)
and the supervisor stops the others; if the supervisor is killed (SIGKILL), its workers go on
serving until they are stopped, and the port is free once the last of them exits. A stale claim
cannot outlive its processes: the kernel closes the sockets with them (no lock file to clean).

gRPC cannot adopt a socket from Python, so ``--workers`` still binds the gRPC port with
SO_REUSEPORT in each worker. The supervisor first checks the port is free with a plain bind
(``check_free``), then holds it for the group's lifetime (``hold_for_group``): a bound, never
listening SO_REUSEPORT socket without SO_REUSEADDR. The kernel lets the workers' SO_REUSEPORT
binds join it, while any bind without SO_REUSEPORT (a second group's check, a plain server)
fails with EADDRINUSE, from the moment the group starts, not only once a worker has loaded its
models and listens (a second group started during those seconds used to join). The placeholder
never listens, so the kernel never hands it a connection. What remains: a process of the same
user that sets SO_REUSEPORT itself can join the gRPC port and take connections (gRPC listens on
a dual-stack IPv6 socket, so even an IPv4 joiner is preferred for IPv4 clients: steering it as
REST is would not help). That is no boundary the kernel keeps anyway (the same user can read
the group's token from /proc or ptrace it); a second ``serving start`` never does it.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import socket
import struct

WORKER_FD_ENV = "SERVING_LISTEN_FD"  # set by the supervisor for its workers (serving.workers)
LISTEN_BACKLOG = 1024
SO_ATTACH_REUSEPORT_CBPF = 51  # <asm-generic/socket.h>; not exported by Python's socket module

log = logging.getLogger("serving.listen")


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
    """This worker's listening socket of the group (``WORKER_FD_ENV``), else None."""
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


def claim_group(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on ``host:port``, one per worker, forming a SO_REUSEPORT group
    that only they are served from (see the module doc). OSError naming the port when taken."""
    check_free(host, port, "REST")
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(_family(host), socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise _in_use(host, port, exc, "REST") from None
    steer(sockets[0], count)
    return sockets


def steer(sock: socket.socket, count: int) -> bool:
    """Attach to ``sock``'s SO_REUSEPORT group a classic BPF program returning ``hash % count``:
    the connection's socket index, so sockets joining later (index >= count) get none. False,
    logged, where the kernel refuses it (the group then spreads by hash over every member)."""
    # Written by hand: Python has no binding for SO_ATTACH_REUSEPORT_CBPF, and the program is
    # three instructions. Each is struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}.
    ld_abs_w, alu_mod_k, ret_a = 0x20, 0x94, 0x16  # BPF_LD|BPF_W|BPF_ABS, BPF_ALU|BPF_MOD|BPF_K, BPF_RET|BPF_A
    skf_ad_rxhash = (-0x1000 + 32) & 0xFFFFFFFF  # SKF_AD_OFF + SKF_AD_RXHASH: the flow hash
    program = b"".join(struct.pack("HBBI", code, 0, 0, k) for code, k in
                       ((ld_abs_w, skf_ad_rxhash), (alu_mod_k, count), (ret_a, 0)))
    buffer = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", 3, ctypes.addressof(buffer))  # struct sock_fprog {len; *filter}
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError as exc:
        log.warning("could not steer the workers' port (%s): connections are spread over every "
                    "SO_REUSEPORT socket on it, including any a same-user process adds", exc)
        return False
    return True
