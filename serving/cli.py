"""``serving``: start the model server, predict through it, show deployment status.

Errors become one line on stderr and exit code 1 (never a traceback).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING, Any

from contracts.runtime import configure_tensorflow

# Keras 2 and quiet start-up logs (TensorFlow's CPU-only cuDNN/cuFFT/cuBLAS ERROR lines), before
# anything imports TensorFlow; TF_CPP_MIN_LOG_LEVEL=0 shows everything.
configure_tensorflow()

import click  # noqa: E402

from contracts import settings  # noqa: E402
from serving.options import AUTH_TOKEN_ENV, StartOptions, start_options  # noqa: E402

if TYPE_CHECKING:
    from serving.predict_client import Report

DEFAULT_URL = settings.DEFAULT_SERVER_URL


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
@start_options
def start(**flags: Any) -> None:
    """Serve every deployed model until SIGTERM."""
    serve_forever(StartOptions(**flags),
                  grpc_port_given=click.get_current_context().get_parameter_source("grpc_port")
                  != click.core.ParameterSource.DEFAULT)


def serve_forever(options: StartOptions, grpc_port_given: bool = True) -> None:
    """Run the server of ``options`` in this process (or supervise its --workers) until SIGTERM."""
    import asyncio
    import logging
    import os

    logging.basicConfig(level=options.log_level.upper(), format="%(asctime)s %(name)s "
                        "%(levelname)s %(message)s", stream=sys.stderr)
    if options.workers > 1:
        if options.port == 0:
            raise click.UsageError("--workers needs an explicit --port (workers share it)")
        from serving.workers import supervise

        sys.exit(supervise(options.workers, sys.argv[sys.argv.index("start"):], options.host,
                           options.port, options.grpc_port, grpc_required=grpc_port_given))
    from serving.group_channel import GroupChannel
    from serving.listen import check_free, claim, hold_other_family

    group = GroupChannel.from_env()  # a worker of --workers: its supervisor owns the ports
    sock = None
    guards: list[Any] = []  # held until the server stops (serving.listen)
    if group is None:
        sock = claim(options.host, options.port)  # before any model loads: a clash fails
        guards.append(hold_other_family(options.host, options.port))
        if options.grpc_port and grpc_port_given:
            check_free(options.host, options.grpc_port)
        # grpc binds both families itself for a wildcard or a name ("localhost")
        if options.grpc_port and options.host in ("127.0.0.1", "::1"):
            try:
                guards.append(hold_other_family(options.host, options.grpc_port))
            except OSError:
                if grpc_port_given:
                    raise  # a default port taken only warns, when gRPC binds (serving.server)

    from serving.batching import BatchingConfig
    from serving.server import (
        build_runtime,
        configure_gc,
        configure_tf_threads,
        import_before_loading,
        serve,
    )

    token = resolve_auth_token(options.auth_token, options.auth_token_file, os.environ)
    config = server_config(options, token, grpc_required=grpc_port_given)
    snapshot = _source(options)
    configure_tf_threads(options.intra_op_threads, options.inter_op_threads)
    configure_gc()
    runtime = build_runtime(snapshot, BatchingConfig(options.batch_max,
                                                     options.batch_window_ms / 1000.0),
                            poll_interval=options.poll_s)
    import_before_loading(config)  # before the loader thread imports TensorFlow
    runtime.manager.start()
    if group is not None:  # connections come once the models are loaded and it says so
        from serving.workers import wait_for_first_sync

        wait_for_first_sync(runtime.manager.synced)
    try:
        asyncio.run(serve(runtime, config, grace_s=options.grace_s, sock=sock, group=group))
    finally:
        runtime.close()
        for guard in guards:
            if guard is not None:
                guard.close()


def server_config(options: StartOptions, token: str | None, grpc_required: bool = True) -> Any:
    """The HTTP/gRPC front end's settings from ``options``.

    ``grpc_required``: False when --grpc-port was left at its default, so that the default port
    taken (by a second server, say) only warns; an explicit one must bind.
    """
    from serving.app import ServerConfig

    names = {field.name for field in dataclasses.fields(ServerConfig)}
    computed = ("auth_token", "max_body_bytes", "max_inflight_bytes", "grpc_required")
    shared = {name: getattr(options, name) for name in names
              if hasattr(options, name) and name not in computed}
    return ServerConfig(**shared, auth_token=token, max_body_bytes=options.max_body_bytes,
                        max_inflight_bytes=options.max_inflight_bytes, grpc_required=grpc_required)


def _source(options: StartOptions) -> Any:
    """What to serve: the registry's deployments, or every version directory (--source)."""
    import logging

    from serving.sources import directory_source, registry_source

    if options.source == "directory":
        return directory_source(options.serving_dir)
    try:
        return registry_source(options.metadata, options.serving_dir)
    except ImportError as exc:
        if options.source == "registry":
            raise click.ClickException(f"the registry is not installed: {exc}") from exc
        logging.getLogger("serving").warning(
            "registry not available (%s); serving every version directory in %s", exc,
            options.serving_dir or settings.default_serving_dir())
        return directory_source(options.serving_dir)


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

    from datasources.images import ImageTooLarge

    try:
        report = run(name)
    except ImageTooLarge as exc:  # an input file: a usage error (exit 2), named
        error = click.ClickException(str(exc))
        error.exit_code = 2
        raise error from None
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
