"""``mlmodel ui``: start the web console (added to the ``mlmodel`` group by the table in
``registry/cli/__init__.py``, and loaded only when ``ui`` is asked for).

asyncio, aiohttp, Jinja2 and the console's modules are imported only when the command runs, so
the other ``mlmodel`` commands start as fast as before.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import click

from contracts import settings
from registry.cliutil import command, common_options, fail_on_errors, settings_registry

TOKEN_ENV = "MLMODEL_UI_TOKEN"
UI_EPILOG = """\
  mlmodel ui                                   (http://127.0.0.1:8080, prints its token URL)
  mlmodel ui --port 8090 --server-url http://127.0.0.1:8501
  MLMODEL_UI_TOKEN=s3cret mlmodel ui --host 0.0.0.0   (other machines: a token is required)
"""


@command("ui", UI_EPILOG)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback needs --auth-token.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port, printed).")
@click.option("--auth-token", default=None, envvar=TOKEN_ENV, metavar="T",
              help=f"Token that allows changes (and, off loopback, any page); env {TOKEN_ENV}. "
                   "Default: a random one, printed in the URL to open.")
@click.option("--pipeline-root", default=settings.DEFAULT_PIPELINE_ROOT, show_default=True,
              metavar="DIR", help="The pipeline's artifact root: the only files (besides the "
                                  "serving dir) the console reads, for example galleries.")
@click.option("--server-url", default=None, metavar="URL",
              help=f"The model server the predict page talks to (env {settings.ENV_SERVER_URL}, "
                   f"default {settings.DEFAULT_SERVER_URL}).")
@click.option("--server-token", default=None, envvar="SERVING_AUTH_TOKEN", metavar="T",
              help="The model server's own token, if it was started with one "
                   "(env SERVING_AUTH_TOKEN).")
@click.option("--allowed-host", "allowed_host", multiple=True, metavar="NAME",
              help="Another Host name the console answers to (repeatable), e.g. the name a "
                   "reverse proxy or other machines use. The bound address and localhost "
                   "always work; any other Host is refused (DNS rebinding).")
@common_options
@click.pass_context
@fail_on_errors
def ui_cmd(ctx: click.Context, host: str, port: int, auth_token: str | None, pipeline_root: str,
           server_url: str | None, server_token: str | None, allowed_host: tuple[str, ...],
           **_: Any) -> None:
    """A web console on the registry and ML Metadata: models, versions, deploys and rollbacks,
    pipeline runs, lineage from data to deployment, figures, and a predict box.

    Every change goes through the same registry calls, lock and history as the CLI. Pages are
    read-only without the console's token; open the printed URL once to hold it.
    """
    import asyncio

    from registry.ui import security
    from registry.ui.app import UIConfig, make_app

    if auth_token == "":
        raise click.UsageError(f"--auth-token/{TOKEN_ENV} is empty; give a token or unset it")
    problem = security.check_bind(host, auth_token)
    if problem:
        raise click.UsageError(problem)
    registry, _ = settings_registry(ctx)
    token = auth_token or security.new_token()
    config = UIConfig(registry=registry, pipeline_root=os.path.abspath(pipeline_root),
                      server_url=server_url or settings.default_server_url(), token=token,
                      reads_need_token=not security.is_loopback(host),
                      server_token=server_token or None,
                      allowed_hosts=security.allowed_hosts(host, allowed_host))
    app = make_app(config)
    try:
        asyncio.run(_serve(app, host, port, config, announce_token=None if auth_token else token))
    except OSError as exc:
        raise click.UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick "
                               "another --port, or stop what uses it") from None


async def _serve(app: Any, host: str, port: int, config: Any, announce_token: str | None) -> None:
    """Run until SIGINT/SIGTERM; print the URL (with the token when it was made here)."""
    import asyncio

    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        bound = server.sockets[0].getsockname()[1] if server and server.sockets else port
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{bound}/"
        registry = config.registry
        click.echo(f"mlmodel ui on {url} (registry {registry.backend.display}, serving dir "
                   f"{registry.serving_dir}, model server {config.server_url})")
        if announce_token:
            click.echo(f"To deploy, stop, roll back or label from the browser, open:\n  "
                       f"{url}?token={announce_token}")
        else:
            click.echo("Changes need the token you gave: open the console with ?token=... once, "
                       "or send 'Authorization: Bearer ...'.")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        click.echo("mlmodel ui: stopping")
    finally:
        await runner.cleanup()
