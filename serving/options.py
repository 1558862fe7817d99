"""Every ``serving start`` setting in one typed dataclass; the flags are generated from it.

One default per setting: a field's default is the flag's default and the server's
(``serving.app.ServerConfig`` and ``serving.batching.BatchingConfig`` take theirs from here).
This module imports only click, contracts and datasources.images (no Pillow until it decodes), so ``serving start --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import click

from contracts import settings
from contracts.flags import FLAG, NO_FLAG, Flag, field_default, flag, option_spec
from datasources.images import DEFAULT_MAX_IMAGE_PIXELS

AUTH_TOKEN_ENV = "SERVING_AUTH_TOKEN"

DEFAULT_PORT = 8501
DEFAULT_GRPC_PORT = 8500
DEFAULT_MAX_BODY_MB = 6.0
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_KEEPALIVE_TIMEOUT_S = 75.0
DEFAULT_BATCH_MAX = 64
INFLIGHT_BODIES = 8  # default --max-inflight-mb: this many full-size bodies at once


def _mb(value: float | None) -> int | None:
    return None if value is None else int(value * 1024 * 1024)


@dataclass(frozen=True)
class StartOptions:
    """What ``serving start`` was asked for, in the order of its --help."""

    port: int = flag(DEFAULT_PORT, type=click.IntRange(0, 65535),
                     help="TCP port (TF Serving REST uses 8501; use 8080 for SageMaker).")
    host: str = flag("127.0.0.1",
                     help="Interface to bind; 0.0.0.0 exposes the server to the network.")
    metadata: str | None = flag(
        None, envvar=settings.ENV_METADATA,
        help=f"ML Metadata database of the registry (env {settings.ENV_METADATA}, "
             f"default {settings.DEFAULT_METADATA}).")
    serving_dir: str | None = flag(
        None, envvar=settings.ENV_SERVING_DIR,
        help=f"Where deployed versions live (env {settings.ENV_SERVING_DIR}, "
             f"default {settings.DEFAULT_SERVING_DIR}).")
    source: str = flag(
        "auto", type=click.Choice(["auto", "registry", "directory"]),
        help="What to serve: the registry's deployments, or every <name>/<N> in the serving "
             "directory (TF Serving's rule); auto = registry when it is installed.")
    auth_token: str | None = flag(
        None, help=f"Require 'Authorization: Bearer TOKEN' on every route except health (env "
                   f"{AUTH_TOKEN_ENV}; prefer --auth-token-file, which ps does not show).")
    auth_token_file: str | None = flag(
        None, type=click.Path(exists=True, dir_okay=False),
        help="Read the token from this file (its first line, stripped).")
    max_body_mb: float = flag(DEFAULT_MAX_BODY_MB, type=click.FloatRange(0.001),
                              help="Largest request body; bigger ones get 413.")
    max_image_pixels: int = flag(
        DEFAULT_MAX_IMAGE_PIXELS, type=click.IntRange(0),
        help="Largest image (width x height, read from its header before decoding) that "
             "serving_images decodes; bigger ones get 400 / INVALID_ARGUMENT (0 = no cap).")
    workers: int = flag(
        1, type=click.IntRange(1, 64),
        help="Server processes sharing the port, each with every model loaded (2 on 2 cores "
             "served 1.3-1.4x the REST requests of 1 at concurrency 32; gRPC does not gain). "
             "The group owns its ports: the supervisor listens and hands each connection to "
             "the next ready worker, so they are spread evenly, no other process can join the "
             "port, and a second group or server is refused (serving/group_front.py). Needs an "
             "explicit --port; each worker has its own /metrics.")
    grpc_port: int = flag(
        DEFAULT_GRPC_PORT, type=click.IntRange(0, 65535),
        help="TF Serving's gRPC API (PredictionService, ModelService, health) on this port "
             "beside REST; 0 turns it off.")
    max_inflight_mb: float | None = flag(
        None, type=click.FloatRange(0),
        help=f"Request bodies held at once, all requests together; one that does not fit gets "
             f"503 with Retry-After before it is read (default {INFLIGHT_BODIES} x "
             "--max-body-mb; 0 = no limit). A request costs about 10x its body in memory.")
    timeout_s: float = flag(DEFAULT_TIMEOUT_S, type=click.FloatRange(0.001),
                            help="Per-request deadline; slower requests get 504.")
    batch_max: int = flag(DEFAULT_BATCH_MAX, type=click.IntRange(1),
                          help="Most examples batched into one model call.")
    batch_window_ms: float = flag(
        0.0, type=click.FloatRange(0), show_default=True,
        help="How long a batch waits for company (0 = batch only what queued while the model "
             "was busy).")
    poll_s: float = flag(0.5, type=click.FloatRange(0.05),
                         help="How often the deployments are re-read.")
    grace_s: float = flag(
        30.0, type=click.FloatRange(0),
        help="On SIGTERM/Ctrl-C, how long requests in flight may take to finish (a second "
             "signal stops waiting).")
    intra_op_threads: int = flag(
        0, type=click.IntRange(0), show_default=True,
        help="TensorFlow intra-op threads per model call (0 = TensorFlow's default, one per "
             "core). 1 answers one-image requests faster (p50 1.8 -> 1.5 ms on 2 cores) but "
             "costs ~10% of the throughput under load; big requests use the other cores "
             "anyway, as parallel slices. See docs/serving.md.")
    inter_op_threads: int = flag(0, type=click.IntRange(0), show_default=True,
                                 help="TensorFlow inter-op threads (0 = TensorFlow's default).")
    header_timeout_s: float = flag(
        DEFAULT_HEADER_TIMEOUT_S, type=click.FloatRange(0),
        help="A client must send a whole request head within this many seconds (0 = no limit).")
    keepalive_timeout_s: float = flag(DEFAULT_KEEPALIVE_TIMEOUT_S, type=click.FloatRange(0),
                                      help="Close idle kept-alive connections after this long.")
    max_connections: int | None = flag(
        None, type=click.IntRange(1),
        help="Open connections allowed; above it the oldest idle one is closed, or new ones get "
             "503 (default: the open-file limit minus a reserve).")
    # request capture (serving/capture.py, docs/monitoring.md); same names as ServerConfig's
    capture_dir: str = flag(
        default_factory=settings.default_capture_dir, envvar=settings.ENV_CAPTURE_DIR,
        help=f"Where sampled requests are written, as TF Serving PredictionLog TFRecords under "
             f"<dir>/<serving name>/<version>/ (env {settings.ENV_CAPTURE_DIR}, default "
             f"{settings.DEFAULT_CAPTURE_DIR}).")
    capture_rate: float = flag(
        0.0, type=click.FloatRange(0.0, 1.0), show_default=True,
        help="Share of the answered requests to capture, 0..1 (0 = off; 1.0 = every one). "
             "Written off the request path: a request never waits for or fails by it.")
    capture_rotate_mb: float = flag(16.0, type=click.FloatRange(0.001),
                                    help="Start a new capture file past this size.")
    capture_rotate_seconds: float = flag(
        60.0, type=click.FloatRange(0.1),
        help="Start a new capture file after this long, so readers see recent requests soon.")
    capture_max_mb: float = flag(
        1024.0, type=click.FloatRange(0),
        help="Disk budget of the whole capture directory: the oldest finished files are deleted "
             "past it (0 = no budget).")
    log_level: str = flag("INFO")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def max_inflight_bytes(self) -> int | None:
        return _mb(self.max_inflight_mb)


def start_options(command: Any) -> Any:
    """Decorate ``command`` with one click option per ``StartOptions`` field, in field order."""
    for field in reversed(dataclasses.fields(StartOptions)):
        spec: Flag | None = field.metadata.get(FLAG)
        if spec is None:
            if NO_FLAG not in field.metadata:
                raise TypeError(f"StartOptions.{field.name} has no flag: give it flag(help=...) "
                                "or no_flag(why) in serving/options.py")
            continue
        names, kwargs = option_spec(field.name, spec, field_default(field))
        command = click.option(*names, **kwargs)(command)
    return command
