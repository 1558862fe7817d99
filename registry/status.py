"""``serving status NAME``: each deployed version's state, from the registry and the live server.

The ``serving`` CLI mounts ``status_command``. The live part is ``GET {server}/v1/models/{name}``
(TF Serving's status JSON) with a short timeout; when the server cannot be reached the registry's
own state is shown and a note says so.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import click

from contracts.settings import DEFAULT_SERVER_URL, ENV_SERVER_URL, default_server_url
from registry import render
from registry.cliutil import KVCommand, common_options, fail_on_errors, settings_registry

TOKEN_ENV = "SERVING_AUTH_TOKEN"


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str  # the live server's state, or the registry's when the server is unreachable
    labels: tuple[str, ...]
    current: bool
    registry_state: str  # SERVING (should be loaded), STANDBY (deployed, not served), STOPPED
    live_state: str | None  # START/LOADING/AVAILABLE/UNLOADING/END, NOT_LOADED, None if unknown
    serving_name: str
    path: str
    source: str  # "server <url>" or "registry (server <url> unreachable: why)"
    live_message: str = ""  # the server's error_code and message for this version, if any


def server_url(explicit: str | None = None) -> str:
    """``explicit``, else $MNIST_TFX_SERVER_URL, else the default; no trailing slash."""
    return (explicit or default_server_url()).rstrip("/")


def fetch_live(url: str, serving_name: str, timeout: float = 1.0, token: str | None = None,
               messages: dict[int, str] | None = None) -> tuple[dict[int, str] | None, str]:
    """{version: state} from the server's status endpoint, or (None, why) when unreachable.
    ``token``: the server's --auth-token (sent as a bearer token); ``messages`` is filled with
    {version: "ERROR_CODE: message"} for versions whose status carries an error."""
    import urllib.error  # lazily: http.client costs ~40 ms at startup
    import urllib.request

    endpoint = f"{url}/v1/models/{serving_name}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        request = urllib.request.Request(endpoint, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = json.loads(response.read().decode("utf-8") or "{}")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return {}, ""  # the server is up but serves nothing under this name
        if exc.code == 401:
            return None, (f"HTTP 401: the server needs its token; give --token or set "
                          f"{TOKEN_ENV}" if not token else "HTTP 401: the server refused the "
                          "token given (--token / $SERVING_AUTH_TOKEN)")
        return None, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, str(reason) or type(exc).__name__
    states: dict[int, str] = {}
    for entry in body.get("model_version_status", []) or []:
        try:
            version = int(entry.get("version"))
        except (TypeError, ValueError):
            continue
        states[version] = str(entry.get("state", ""))
        status = entry.get("status") or {}
        code = str(status.get("error_code", "OK")) if isinstance(status, dict) else "OK"
        if messages is not None and code != "OK":
            messages[version] = f"{code}: {status.get('error_message', '')}"
    return states, ""


def serving_status(reg, name: str, url: str | None = None,  # noqa: ANN001 (Registry)
                   timeout: float = 1.0, token: str | None = None) -> list[VersionStatus]:
    """Every deployed version of ``name`` with its registry state and, if reachable, live state."""
    versions = reg.versions(name)
    url = server_url(url)
    if not versions:
        return []
    serving_name = versions[0].serving_name
    messages: dict[int, str] = {}
    live, why = fetch_live(url, serving_name, timeout, token, messages)
    rows = []
    for v in versions:
        if v.serving:
            registry_state = "SERVING"
        else:
            stopped = not any(x.serving for x in versions)
            registry_state = "STOPPED" if stopped else "STANDBY"
        if live is None:
            live_state = None
            state = registry_state
            source = f"registry (server {url} unreachable: {why})"
        else:
            live_state = live.get(v.version, "NOT_LOADED")
            state = live_state
            source = f"server {url}"
        rows.append(VersionStatus(
            version=v.version, state=state, labels=v.labels, current=v.current,
            registry_state=registry_state, live_state=live_state, serving_name=v.serving_name,
            path=v.path, source=source, live_message=messages.get(v.version, ""),
        ))
    return rows


def print_serving_status(rows: list[VersionStatus], output: str = "table") -> None:
    if output == "json":
        render.print_json([asdict(r) | {"labels": list(r.labels)} for r in rows])
        return
    render.print_table(
        ["version", "state", "label", "current", "registry"],
        [[r.version, r.state, ",".join(r.labels) or "-", "yes" if r.current else "",
          r.registry_state] for r in rows],
        title=rows[0].serving_name if rows else None,
    )
    for r in rows:
        if r.live_message:
            render.note(f"version {r.version}: {r.live_message}")
    if rows and rows[0].live_state is None:
        render.note(f"note: showing registry state only; {rows[0].source.split('(', 1)[1][:-1]}")
    if not rows:
        render.note("no deployed versions; deploy one with `mlmodel deploy NAME`")


@click.command("status", cls=KVCommand, epilog="""\b
Examples:
  serving status mnist
  serving status name=mnist --output json
  serving status mnist --url http://127.0.0.1:8501
""")
@click.argument("name")
@click.option("--url", "--server-url", "url", default=None, metavar="URL",
              help=f"The model server to ask (env {ENV_SERVER_URL}, default {DEFAULT_SERVER_URL}; "
                   "--server-url is the old spelling).")
@click.option("--timeout", default=1.0, show_default=True, type=float,
              help="Seconds to wait for the server before showing registry state only.")
@click.option("--token", default=None, envvar=TOKEN_ENV, metavar="T",
              help=f"The model server's --auth-token, when it has one (env {TOKEN_ENV}).")
@common_options
@click.pass_context
@fail_on_errors
def status_command(ctx: click.Context, name: str, url: str | None, timeout: float,
                   token: str | None, **_: object) -> None:
    """Show each deployed version of model NAME: version, state, label.

    State comes from the live model server when it answers, else from the registry.
    """
    reg, output = settings_registry(ctx)
    print_serving_status(serving_status(reg, name, url, timeout, token or None), output)
