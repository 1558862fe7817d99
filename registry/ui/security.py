"""The console's access rules: who may read, who may change, and from which page.

* Binding: loopback by default; any other address needs an auth token (``check_bind``).
* Reads: open on loopback; with a token on a non-loopback address, they need it too.
* Writes (deploy, stop, rollback, label) and the predict proxy (which adds the model server's
  token to its call) always need the token, and a CSRF token from a page the console rendered
  (``csrf_token``), and an ``Origin`` (when the browser sends one) naming the console itself.
* Every request's ``Host`` must be one the console answers to (``allowed_hosts``): DNS
  rebinding (a page whose name now points at 127.0.0.1) is refused with 421. Without ``--auth-token`` a random token is made at start and printed once, in
  the URL to open (as Jupyter does); opening that URL stores it in a ``SameSite=Strict`` cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
from urllib.parse import urlsplit

TOKEN_COOKIE = "mlmodel_ui_token"
TOKEN_HEADER = "Authorization"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and names that resolve only to them (``localhost``)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def check_bind(host: str, token: str | None) -> str | None:
    """An error message when ``host`` may not be bound with ``token``, else None."""
    if not is_loopback(host) and not token:
        return (f"--host {host} is reachable from other machines: set --auth-token (or "
                "$MLMODEL_UI_TOKEN) so that only holders of the token can use the console, "
                "or bind 127.0.0.1")
    return None


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Guard:
    """Checks a request's token and CSRF token; ``secret`` signs the CSRF tokens."""

    def __init__(self, token: str, reads_need_token: bool) -> None:
        self.token = token
        self.reads_need_token = reads_need_token
        self._secret = secrets.token_bytes(32)

    def csrf_token(self) -> str:
        return hmac.new(self._secret, b"csrf", hashlib.sha256).hexdigest()

    def token_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(str(presented).encode(),
                                                       self.token.encode())

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(str(presented).encode(),
                                                       self.csrf_token().encode())


def presented_token(headers: dict[str, str] | object, cookies: dict[str, str]) -> str | None:
    """The token a request carries: ``Authorization: Bearer T`` or the console's cookie."""
    header = getattr(headers, "get", lambda _k, _d=None: None)(TOKEN_HEADER, "") or ""
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return cookies.get(TOKEN_COOKIE)


def allowed_hosts(bound: str, extra: tuple[str, ...] = ()) -> frozenset[str]:
    """The Host names the console answers to: the bound address, the loopback names, the
    machine's own names when bound to every interface, and ``--allowed-host`` values. Any
    other Host is refused, which is what stops DNS rebinding: a page on evil.example whose
    name now resolves to 127.0.0.1 sends ``Host: evil.example`` (and an Origin equal to it)."""
    names = {bound, "localhost", "127.0.0.1", "::1", *extra}
    if bound in ("0.0.0.0", "::", ""):
        names |= {socket.gethostname(), socket.getfqdn()}
    return frozenset(n.lower().strip("[]") for n in names if n)


def host_name(host_header: str | None) -> str:
    """The name part of a Host header (``[::1]:8080`` -> ``::1``, ``a:80`` -> ``a``)."""
    host = (host_header or "").strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_ok(host_header: str | None, allowed: frozenset[str]) -> bool:
    return host_name(host_header) in allowed


def same_origin(origin: str | None, host_header: str | None) -> bool:
    """No Origin (not a browser, or a same-origin GET) or one naming the console's own host."""
    if not origin:
        return True
    if origin == "null" or not host_header:
        return False
    return urlsplit(origin).netloc.lower() == host_header.lower()
