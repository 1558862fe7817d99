"""``serving``: start the model server, predict through it, show deployment status.

Errors become one line on stderr and exit code 1 (never a traceback).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from contracts.runtime import configure_tensorflow

# Keras 2 and quiet start-up logs (TensorFlow's CPU-only cuDNN/cuFFT/cuBLAS ERROR lines), before
# anything imports TensorFlow; TF_CPP_MIN_LOG_LEVEL=0 shows everything.
configure_tensorflow()

import click  # noqa: E402

from contracts import settings  # noqa: E402

if TYPE_CHECKING:
    from serving.predict_client import Report

DEFAULT_URL = settings.DEFAULT_SERVER_URL
AUTH_TOKEN_ENV = "SERVING_AUTH_TOKEN"
# serving.app's defaults, written here so that --help does not import the server
# (tests/serving/test_cli.py checks they agree).
HEADER_TIMEOUT_HELP = "10 s"
KEEPALIVE_TIMEOUT_HELP = "75 s"


def resolve_auth_token(flag: str | None, token_file: str | None,
                       environ: Any) -> str | None:
    """The server's token from --auth-token, --auth-token-file or $SERVING_AUTH_TOKEN.

    An empty token is an error, not "no auth": ``SERVING_AUTH_TOKEN=`` used to turn
    authentication off silently.
    """
    if flag is not None and token_file is not None:
        raise click.UsageError("give --auth-token or --auth-token-file, not both")
    if token_file is not None:
        with open(token_file, encoding="utf-8") as handle:
            token = handle.readline().strip()
        if not token:
            raise click.UsageError(f"--auth-token-file {token_file}: the file is empty; write "
                                   "the token on its first line")
        return token
    if flag is None and AUTH_TOKEN_ENV in environ:
        flag, source = environ[AUTH_TOKEN_ENV], f"${AUTH_TOKEN_ENV}"
    else:
        source = "--auth-token"
    if flag is not None and not flag.strip():
        raise click.UsageError(f"{source} is empty, which would turn authentication off; set a "
                               f"token, or unset {AUTH_TOKEN_ENV} to serve without one")
    return flag.strip() if flag is not None else None


class _Group(click.Group):
    """Turns any exception into one line on stderr and exit code 1; mounts ``status`` lazily.

    ``serving status`` lives in the registry (``registry/status.py``, ``status_command``); it is
    imported only when asked for, so the serving CLI works (and starts fast) without it.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "status"})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name == "status":
            return _status_command()
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


def _status_command() -> click.Command:
    try:
        from registry.status import status_command
    except ImportError as exc:
        reason = str(exc)

        @click.command("status", context_settings={"ignore_unknown_options": True})
        @click.argument("args", nargs=-1, type=click.UNPROCESSED)
        def status_missing(args: tuple[str, ...]) -> None:
            """Deployment status of a model (needs the registry package)."""
            raise click.ClickException(f"`serving status` needs the registry's "
                                       f"registry/status.py, which is not importable: {reason}")

        return status_missing
    return status_command


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The model server (TF Serving REST, KServe v2, SageMaker) and its client."""


@main.command()
@click.option("--port", default=8501, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port (TF Serving REST uses 8501; use 8080 for SageMaker).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind; 0.0.0.0 exposes the server to the network.")
@click.option("--metadata", default=None, envvar=settings.ENV_METADATA,
              help=f"ML Metadata database of the registry (env {settings.ENV_METADATA}, "
                   f"default {settings.DEFAULT_METADATA}).")
@click.option("--serving-dir", default=None, envvar=settings.ENV_SERVING_DIR,
              help=f"Where deployed versions live (env {settings.ENV_SERVING_DIR}, "
                   f"default {settings.DEFAULT_SERVING_DIR}).")
@click.option("--source", type=click.Choice(["auto", "registry", "directory"]), default="auto",
              show_default=True,
              help="What to serve: the registry's deployments, or every <name>/<N> in the "
                   "serving directory (TF Serving's rule); auto = registry when it is installed.")
@click.option("--auth-token", default=None,
              help=f"Require 'Authorization: Bearer TOKEN' on every route except health (env "
                   f"{AUTH_TOKEN_ENV}; prefer --auth-token-file, which ps does not show).")
@click.option("--auth-token-file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Read the token from this file (its first line, stripped).")
@click.option("--max-body-mb", default=6.0, show_default=True, type=click.FloatRange(0.001),
              help="Largest request body; bigger ones get 413.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Server processes sharing the port (SO_REUSEPORT), each with every model "
                   "loaded: 2 on 2 cores served 1.6x the requests of 1 at concurrency 32. "
                   "Needs an explicit --port; each worker has its own /metrics.")
@click.option("--reuse-port", is_flag=True, hidden=True,
              help="Set by --workers: listen with SO_REUSEPORT.")
@click.option("--grpc-port", default=8500, show_default=True, type=click.IntRange(0, 65535),
              help="TF Serving's gRPC API (PredictionService, ModelService, health) on this "
                   "port beside REST; 0 turns it off.")
@click.option("--max-inflight-mb", default=None, type=click.FloatRange(0),
              help="Request bodies held at once, all requests together; one that does not fit "
                   "gets 503 with Retry-After before it is read (default 8 x --max-body-mb; "
                   "0 = no limit). A request costs about 10x its body in memory.")
@click.option("--timeout-s", default=60.0, show_default=True, type=click.FloatRange(0.001),
              help="Per-request deadline; slower requests get 504.")
@click.option("--batch-max", default=64, show_default=True, type=click.IntRange(1),
              help="Most examples batched into one model call.")
@click.option("--batch-window-ms", default=0.0, show_default=True, type=click.FloatRange(0),
              help="How long a batch waits for company (0 = batch only what queued while the "
                   "model was busy).")
@click.option("--poll-s", default=0.5, show_default=True, type=click.FloatRange(0.05),
              help="How often the deployments are re-read.")
@click.option("--grace-s", default=30.0, show_default=True, type=click.FloatRange(0),
              help="On SIGTERM/Ctrl-C, how long requests in flight may take to finish (a "
                   "second signal stops waiting).")
@click.option("--intra-op-threads", default=0, show_default=True, type=click.IntRange(0),
              help="TensorFlow intra-op threads per model call (0 = TensorFlow's default, one "
                   "per core). 1 answers one-image requests faster (p50 1.8 -> 1.5 ms on 2 "
                   "cores) but costs ~10% of the throughput under load; big requests use the "
                   "other cores anyway, as parallel slices. See docs/serving.md.")
@click.option("--inter-op-threads", default=0, show_default=True, type=click.IntRange(0),
              help="TensorFlow inter-op threads (0 = TensorFlow's default).")
@click.option("--header-timeout-s", default=None, type=click.FloatRange(0),
              help=f"A client must send a whole request head within this many seconds "
                   f"(default {HEADER_TIMEOUT_HELP}; 0 = no limit).")
@click.option("--keepalive-timeout-s", default=None, type=click.FloatRange(0),
              help=f"Close idle kept-alive connections after this long (default "
                   f"{KEEPALIVE_TIMEOUT_HELP}).")
@click.option("--max-connections", default=None, type=click.IntRange(1),
              help="Open connections allowed; above it the oldest idle one is closed, or new "
                   "ones get 503 (default: the open-file limit minus a reserve).")
@click.option("--log-level", default="INFO", show_default=True)
def start(port: int, host: str, metadata: str | None, serving_dir: str | None, source: str,
          auth_token: str | None, auth_token_file: str | None, max_body_mb: float,
          workers: int, reuse_port: bool, grpc_port: int, max_inflight_mb: float | None,
          timeout_s: float, batch_max: int, batch_window_ms: float, poll_s: float,
          grace_s: float, intra_op_threads: int, inter_op_threads: int,
          header_timeout_s: float | None, keepalive_timeout_s: float | None,
          max_connections: int | None, log_level: str) -> None:
    """Serve every deployed model until SIGTERM."""
    import asyncio
    import logging
    import os

    if workers > 1:
        if port == 0:
            raise click.UsageError("--workers needs an explicit --port (workers share it)")
        from serving.workers import supervise

        sys.exit(supervise(workers, sys.argv[sys.argv.index("start"):]))

    from serving.app import ServerConfig
    from serving.batching import BatchingConfig
    from serving.server import build_runtime, configure_gc, configure_tf_threads, serve
    from serving.sources import directory_source, registry_source

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s "
                        "%(message)s", stream=sys.stderr)
    if source in ("auto", "registry"):
        try:
            snapshot = registry_source(metadata, serving_dir)
        except ImportError as exc:
            if source == "registry":
                raise click.ClickException(f"the registry is not installed: {exc}") from exc
            logging.getLogger("serving").warning(
                "registry not available (%s); serving every version directory in %s", exc,
                serving_dir or settings.default_serving_dir())
            snapshot = directory_source(serving_dir)
    else:
        snapshot = directory_source(serving_dir)
    configure_tf_threads(intra_op_threads, inter_op_threads)
    configure_gc()
    runtime = build_runtime(snapshot, BatchingConfig(batch_max, batch_window_ms / 1000.0),
                            poll_interval=poll_s)
    token = resolve_auth_token(auth_token, auth_token_file, os.environ)
    connections: dict[str, Any] = {
        "header_timeout_s": header_timeout_s, "keepalive_timeout_s": keepalive_timeout_s,
        "max_connections": max_connections,
        "max_inflight_bytes": None if max_inflight_mb is None else int(max_inflight_mb * 1024 * 1024),
        "grpc_port": grpc_port, "reuse_port": reuse_port,
        # the default port taken (a second server, say) only warns; an explicit one must bind
        "grpc_required": click.get_current_context().get_parameter_source("grpc_port")
        != click.core.ParameterSource.DEFAULT}
    config = ServerConfig(host, port, token, int(max_body_mb * 1024 * 1024), timeout_s,
                          **{k: v for k, v in connections.items() if v is not None})
    if grpc_port:
        # Before the manager's loader thread imports TensorFlow: two threads importing
        # tensorflow.core.* at once deadlock on Python's module locks.
        import serving.grpc_server  # noqa: F401
    runtime.manager.start()
    if reuse_port:  # a worker of --workers: join the shared port with the models loaded
        from serving.workers import wait_for_first_sync

        wait_for_first_sync(runtime.manager.synced)
    try:
        asyncio.run(serve(runtime, config, grace_s=grace_s))
    finally:
        runtime.close()


@main.command()
@click.argument("name")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--version", "version", type=int, default=None, help="Ask this version.")
@click.option("--label", default=None, help="Ask the version this label points at.")
@click.option("--url", "--server-url", "url", default=DEFAULT_URL, show_default=True,
              envvar=[settings.ENV_SERVER_URL, "SERVING_URL"], metavar="URL",
              help=f"The server's base URL (env {settings.ENV_SERVER_URL}; --server-url is an "
                   "old spelling).")
@click.option("--auth-token", default=None, envvar="SERVING_AUTH_TOKEN")
@click.option("--output", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.option("--metadata", default=None, envvar=settings.ENV_METADATA,
              help="Registry used to find the serving name when NAME is a registry model name "
                   f"(env {settings.ENV_METADATA}, default {settings.DEFAULT_METADATA}).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--limit", default=None, type=click.IntRange(1),
              help="Predict at most this many images.")
@click.option("--grpc", "grpc_target", default=None, is_flag=False, flag_value="127.0.0.1:8500",
              metavar="[HOST:PORT]",
              help="Use TF Serving's gRPC API instead of REST (default 127.0.0.1:8500).")
def predict(name: str, inputs: tuple[str, ...], version: int | None, label: str | None, url: str,
            auth_token: str | None, output: str, metadata: str | None, batch_size: int,
            limit: int | None, grpc_target: str | None) -> None:
    """Predict PNG/JPEG files, folders of them (the true label is the folder's name when it is
    a class index or one of the model's class names) and IDX files through the running server,
    with the model's own class names. NAME is the serving name (root_mnist) or the registry's
    model name (mnist)."""
    from serving.predict_client import (
        ServerError,
        is_served,
        predict_inputs,
        registry_serving_name,
        render_json,
        render_table,
    )

    if version is not None and label is not None:
        raise click.UsageError("give --version or --label, not both")

    def run(model: str) -> Report:
        if grpc_target:
            from serving.grpc_client import predict_inputs_grpc

            return predict_inputs_grpc(grpc_target, model, list(inputs), version=version,
                                       label=label, token=auth_token, batch_size=batch_size,
                                       limit=limit)
        return predict_inputs(url, model, list(inputs), version=version, label=label,
                              token=auth_token, batch_size=batch_size, limit=limit)

    try:
        report = run(name)
    except ServerError as exc:
        served_as = None
        if exc.status == 404 and (grpc_target or not is_served(url, name, auth_token)):
            served_as = registry_serving_name(name, metadata)
        if served_as is None:
            raise
        click.echo(f"note: model {name} is served as {served_as}", err=True)
        report = run(served_as)
    if output == "json":
        click.echo(render_json(report))
    else:
        render_table(report)
