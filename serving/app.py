"""The HTTP front end: one table of path patterns, one handler each, one error shape.

Like TF Serving's ``http_rest_api_handler.cc``, paths are matched case-insensitively against
regular expressions on the raw (still URL-encoded) path; names are URL-decoded after matching.
Every response is JSON (``/metrics`` excepted), every error is ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import numpy as np
from aiohttp import web

import contracts
from contracts.settings import default_capture_dir
from datasources.images import DEFAULT_MAX_IMAGE_PIXELS
from serving import capture, codec
from serving.admission import BodyBudget, Busy
from serving.deadline import within
from serving.drain import Drain
from serving.errors import ServingError, invalid
from serving.manager import ModelManager
from serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from serving.metrics import UNKNOWN as UNKNOWN_LABEL
from serving.metrics import Metrics
from serving.options import (  # one default per setting: the flags of `serving start`
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_KEEPALIVE_TIMEOUT_S,
    DEFAULT_MAX_BODY_MB,
    DEFAULT_PORT,
    DEFAULT_TIMEOUT_S,
    INFLIGHT_BODIES,
)
from serving.servable import Servable

log = logging.getLogger("serving.app")

SERVER_NAME = "mnist-tfx-serving"
SERVER_VERSION = contracts.__version__


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    auth_token: str | None = None
    max_body_bytes: int = int(DEFAULT_MAX_BODY_MB * 1024 * 1024)
    timeout_s: float = DEFAULT_TIMEOUT_S
    # connections (serving.server.GuardedRequestHandler): a request head must arrive within
    # header_timeout_s; an idle kept-alive connection is closed after keepalive_timeout_s;
    # over max_connections open ones (None: the fd limit minus a reserve) new ones get a 503
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    keepalive_timeout_s: float = DEFAULT_KEEPALIVE_TIMEOUT_S
    max_connections: int | None = None
    # request bodies held at once (serving.admission): None = INFLIGHT_BODIES x max_body_bytes,
    # 0 = no cap; a request that does not fit while others hold the rest gets 503 + Retry-After
    max_inflight_bytes: int | None = None
    grpc_port: int = 0  # TF Serving's gRPC API beside REST (serving.grpc_server); 0 = off
    grpc_required: bool = True  # False: a gRPC port in use is a warning (the CLI's default port)
    # request capture (serving.capture): a share capture_rate (0 = off) of the answered requests
    # as PredictionLog TFRecords under capture_dir, files rotated at capture_rotate_mb or
    # capture_rotate_seconds, the oldest deleted past capture_max_mb (0 = no budget)
    capture_dir: str = field(default_factory=default_capture_dir)
    capture_rate: float = 0.0
    capture_rotate_mb: float = 16.0
    capture_rotate_seconds: float = 60.0
    capture_max_mb: float = 1024.0
    # serving_images: an image whose header claims more pixels is refused (400) before it is
    # decoded (datasources.images; 0 = no cap)
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS

    @property
    def inflight_limit(self) -> int | None:
        if self.max_inflight_bytes is None:
            return INFLIGHT_BODIES * self.max_body_bytes
        return self.max_inflight_bytes or None


@dataclass
class Ctx:
    manager: ModelManager
    metrics: Metrics
    config: ServerConfig
    drain: Drain
    budget: BodyBudget = field(default_factory=lambda: BodyBudget(None))
    capture: capture.CaptureWriter | None = None  # None: capture off


Handler = Callable[[Ctx, web.Request, dict[str, str]], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    api: str
    auth: bool = True


def _p(regex: str) -> re.Pattern[str]:
    return re.compile(regex, re.IGNORECASE)


_NAME = r"(?P<name>[^/:]+)"
_SEL = r"(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
_V2SEL = r"(?:/versions/(?P<version>[0-9]+))?"


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=codec.dumps(payload), status=status, content_type="application/json")


def error_response(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status)


# -- request helpers ------------------------------------------------------------------------------
def _version(groups: dict[str, str]) -> int | None:
    v = groups.get("version")
    if v is None:
        return None
    if len(v) > 18:
        raise invalid(f"version {v} is not a valid int64")
    return int(v)


def _selector(groups: dict[str, str]) -> tuple[str, int | None, str | None]:
    label = groups.get("label")
    return unquote(groups["name"]), _version(groups), unquote(label) if label else None


MODEL_KEY = web.RequestKey("model", str)
DRAIN_KEY = web.AppKey("drain", Drain)
BUDGET_KEY = web.RequestKey("body_budget", int)  # bytes this request took from ctx.budget
CTX_KEY = web.AppKey("ctx", Ctx)  # the state other front ends (gRPC) share with REST
VERSION_KEY = web.RequestKey("version", str)


def _note(request: web.Request, servable: Servable | None = None, name: str | None = None) -> None:
    """Record which model/version a request went to, for the metrics labels."""
    if servable is not None:
        request[MODEL_KEY], request[VERSION_KEY] = servable.name, str(servable.version)
    elif name is not None:
        request[MODEL_KEY] = name


def _metric_labels(ctx: Ctx, request: web.Request) -> tuple[str, str]:
    """(model, version) for the metrics: a resolved servable's, a model the server has with no
    version, or ``unknown`` for any other name a client put in a URL or header (unbounded)."""
    if VERSION_KEY in request:  # set only from a servable the manager resolved
        return request[MODEL_KEY], request[VERSION_KEY]
    name = request.get(MODEL_KEY)
    if name is None:
        return "", ""
    return (name, "") if name in ctx.manager.models() else (UNKNOWN_LABEL, "")


async def _body(request: web.Request, ctx: Ctx) -> bytes:
    length = request.content_length
    if length is not None and length > ctx.config.max_body_bytes:
        raise _too_large(ctx)
    if BUDGET_KEY not in request:  # before reading: refused bodies cost nothing
        size = length if length is not None else ctx.config.max_body_bytes
        ctx.budget.take(size)
        request[BUDGET_KEY] = size
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise _too_large(ctx) from exc


MAX_JSON_DEPTH = 100
# bytes.translate: keep only brackets, openers -> 1 and closers -> -1 (as int8)
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_DEPTH_TABLE = bytes(1 if b in b"[{" else 255 if b in b"]}" else 0 for b in range(256))


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays/objects in JSON text ``raw``, without parsing it.

    No recursion and no per-byte Python loop (a 6 MB body takes milliseconds): escaped
    backslashes and quotes are dropped, the text outside strings is what lies between
    even/odd quotes, and the depth is the running maximum of +1 per opener, -1 per closer.
    (Invalid JSON may measure oddly; the parser then rejects it anyway.)
    """
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return 0  # cannot be deeper than the limit: skip the work (small bodies)
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(raw.split(b'"')[::2]) if b'"' in raw else raw
    steps = outside.translate(_DEPTH_TABLE, _BRACKETS)
    if not steps:
        return 0
    return int(np.frombuffer(steps, dtype=np.int8).cumsum(dtype=np.int32).max())


def parse_json(raw: bytes) -> Any:
    """``codec.parse_json`` behind a nesting limit: Python's json (the fallback parser) and the
    code walking the result recurse, so a body nested 2,000 deep was a RecursionError (500)."""
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise invalid(f"JSON Parse error: the body is nested {depth} levels deep, more than the "
                      f"{MAX_JSON_DEPTH} allowed; send tensors as flat or shallow arrays")
    try:
        return codec.parse_json(raw)
    except RecursionError:
        raise invalid(f"JSON Parse error: the body is nested too deeply (the limit is "
                      f"{MAX_JSON_DEPTH} levels)") from None


OFF_LOOP_BYTES = 256 * 1024  # bodies above this are parsed and converted in a thread
BIG_KEY = web.RequestKey("big_body", bool)  # the body is over OFF_LOOP_BYTES


async def _json(request: web.Request, ctx: Ctx) -> Any:
    """The parsed body; big bodies are parsed in a thread so small requests keep flowing."""
    raw = await _body(request, ctx)
    request[BIG_KEY] = len(raw) > OFF_LOOP_BYTES
    if request[BIG_KEY]:
        return await asyncio.get_running_loop().run_in_executor(None, parse_json, raw)
    return parse_json(raw)


async def off_loop(big: bool, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, in a thread when the input is big: converting a big body (numpy arrays,
    image headers, tf.Examples) must not hold the event loop while health checks wait."""
    if big:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
    return fn(*args)


def _too_large(ctx: Ctx) -> ServingError:
    mb = ctx.config.max_body_bytes / (1024 * 1024)
    return ServingError("PAYLOAD_TOO_LARGE", f"request body is larger than the {mb:g} MB limit; "
                        "send fewer instances per request (or start the server with a larger "
                        "--max-body-mb)")


# -- TF Serving REST ------------------------------------------------------------------------------
async def tfs_status(ctx: Ctx, request: web.Request, g: dict[str, str]) -> web.Response:
    name, version, label = _selector(g)
    _note(request, name=name)
    statuses = ctx.manager.status(name, version, label)
    return json_response({"model_version_status": [s.to_json() for s in statuses]})


async def tfs_metadata(ctx: Ctx, request: web.Request, g: dict[str, str]) -> web.Response:
    name, version, label = _selector(g)
    servable = ctx.manager.resolve(name, version, label)
    _note(request, servable)
    return json_response({
        "model_spec": {"name": servable.name, "signature_name": "",
                       "version": str(servable.version)},
        "metadata": {"signature_def": {
            "signature_def": servable.signature_defs,
            "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap",
        }},
    })


async def tfs_models(ctx: Ctx, request: web.Request, g: dict[str, str]) -> web.Response:
    models = []
    for name in ctx.manager.models():
        statuses = ctx.manager.status(name)
        models.append({"name": name, "model_version_status": [s.to_json() for s in statuses]})
    return json_response({"models": models})


async def tfs_both(ctx: Ctx, request: web.Request, g: dict[str, str]) -> web.Response:
    raise invalid("a path may name a version or a label, not both: use "
                  "/v1/models/NAME/versions/N or /v1/models/NAME/labels/LABEL")


async def predict_body(servable: Servable, body: Any, big: bool = False,
                       ctx: Ctx | None = None) -> dict[str, Any]:
    sig, inputs, row = await off_loop(big, codec.decode_predict, body, servable)
    outputs = await sig.run(inputs, capture.answer(ctx, servable))
    return codec.encode_predict(outputs, row)


async def classify_body(servable: Servable, body: Any, big: bool = False,
                        ctx: Ctx | None = None) -> dict[str, Any]:
    sig, inputs = await off_loop(big, codec.decode_classify, body, servable)
    outputs = await sig.run(inputs, capture.answer(ctx, servable, capture.CLASSIFY))
    return codec.encode_classify(outputs, servable.class_names)


async def tfs_infer(ctx: Ctx, request: web.Request, g: dict[str, str]) -> web.Response:
    name, version, label = _selector(g)
    _note(request, name=name)
    servable = ctx.manager.resolve(name, version, label)
    _note(request, servable)
    body = await _json(request, ctx)
    verb = g["verb"].lower()
    big = request.get(BIG_KEY, False)
    if verb == "predict":
        return json_response(await predict_body(servable, body, big, ctx))
    if verb == "classify":
        return json_response(await classify_body(servable, body, big, ctx))
    raise invalid(f"model {servable.name} has no regression signature (its signatures: "
                  f"{sorted(servable.signatures)}); use :predict or :classify")


# -- KServe v2 ------------------------------------------------------------------------------------
async def v2_live(ctx: Ctx, request: web.Request, g: dict[str, str]) -> web.Response:
    return json_response({"live": True})


async def v2_ready(ctx: Ctx, request: web.Request, g: dict[str, str]) -> web.Response:
    ready = ctx.manager.ready() and not ctx.drain.draining
    return json_response({"ready": ready}, 200 if ready else 503)


async def v2_server(ctx: Ctx, request: web.Request, g: dict[str, str]) -> web.Response:
    return json_response({"name": SERVER_NAME, "version": SERVER_VERSION,
                          "extensions": ["model_repository_status"]})


def _v2_servable(ctx: Ctx, request: web.Request, g: dict[str, str]) -> Servable:
    name = unquote(g["name"])
    _note(request, name=name)
    servable = ctx.manager.resolve(name, _version(g))
    _note(request, servable)
    return servable


async def v2_model_ready(ctx: Ctx, request: web.Request, g: dict[str, str]) -> web.Response:
    servable = _v2_servable(ctx, request, g)
    return json_response({"name": servable.name, "version": str(servable.version), "ready": True})


async def v2_model_metadata(ctx: Ctx, request: web.Request, g: dict[str, str]) -> web.Response:
    servable = _v2_servable(ctx, request, g)
    sig = servable.signature(None)
    if g.get("version") is None:
        versions = [str(v) for v in sorted(ctx.manager.routes(servable.name).servables)]
    else:
        versions = [str(servable.version)]
    return json_response({
        "name": servable.name,
        "versions": versions,
        "platform": "tensorflow_savedmodel",
        "inputs": [codec.v2_tensor_meta(i) for i in sig.inputs.values()],
        "outputs": [codec.v2_tensor_meta(o) for o in sig.outputs.values()],
    })


INT64_MAX = 2**63 - 1
MAX_DIMS = 32  # numpy's limit is 32 (1.x) or 64 (2.x) dimensions


def check_v2_shapes(body: Any) -> None:
    """Reject a KServe v2 ``shape`` no tensor can have before numpy sees it: a dimension or a
    product beyond int64 (numpy wrapped or raised ValueError: a 500), or too many dimensions.
    Whether the shape matches ``data`` is ``codec.decode_infer``'s check."""
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list):
        return
    for i, tensor in enumerate(inputs):
        shape = tensor.get("shape") if isinstance(tensor, dict) else None
        if not isinstance(shape, list) or not all(type(d) is int for d in shape):
            continue  # codec names the malformed shape
        name = tensor.get("name", i)
        if len(shape) > MAX_DIMS:
            raise invalid(f"input {name}: \"shape\" has {len(shape)} dimensions; at most "
                          f"{MAX_DIMS} are supported")
        product = 1
        for d in shape:
            product *= d
            if d > INT64_MAX or abs(product) > INT64_MAX:
                raise invalid(f"input {name}: \"shape\" {shape} multiplies out beyond 2^63-1 "
                              "; give the tensor's real dimensions, whose product is "
                              "the number of values in \"data\"")


async def v2_infer(ctx: Ctx, request: web.Request, g: dict[str, str]) -> web.Response:
    servable = _v2_servable(ctx, request, g)
    body = await _json(request, ctx)
    check_v2_shapes(body)
    sig, inputs, names = await off_loop(request.get(BIG_KEY, False), codec.decode_infer, body,
                                        servable)
    outputs = await sig.run(inputs, capture.answer(ctx, servable))
    request_id = body.get("id") if isinstance(body, dict) else None
    return json_response(codec.encode_infer(outputs, sig, servable, request_id, names))


# -- SageMaker ------------------------------------------------------------------------------------
async def sm_ping(ctx: Ctx, request: web.Request, g: dict[str, str]) -> web.Response:
    ready = ctx.manager.ready() and bool(ctx.manager.models()) and not ctx.drain.draining
    return json_response({"status": "ok" if ready else "not ready"}, 200 if ready else 503)


def custom_attributes(header: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            attrs[key.strip().lower()] = value.strip()
    return attrs


def _csv_instances(text: str, servable: Servable) -> list[Any]:
    """Rows of numbers, each reshaped to the default signature's example shape when it fits."""
    info = next(iter(servable.signature(None).inputs.values()))
    shape = info.shape[1:] if info.shape is not None else ()
    instances: list[Any] = []
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:  # e.g. a NUL byte: a malformed body, not a server error
        raise invalid(f"text/csv: {exc}; send comma-separated numbers") from exc
    for lineno, row in enumerate(rows, start=1):
        if not row:
            continue
        try:
            values = np.asarray([float(v) for v in row], dtype=np.float32)
        except ValueError as exc:
            raise invalid(f"text/csv line {lineno}: {exc}; send comma-separated numbers") from exc
        if shape and all(d is not None for d in shape) and values.size == int(np.prod(shape)):
            values = values.reshape(shape)  # type: ignore[arg-type]
        instances.append(values.tolist())
    return instances


async def sm_invocations(ctx: Ctx, request: web.Request, g: dict[str, str]) -> web.Response:
    attrs = custom_attributes(request.headers.get("X-Amzn-SageMaker-Custom-Attributes", ""))
    name = attrs.get("tfs-model-name")
    if name is None:
        models = ctx.manager.models()
        if len(models) != 1:
            raise invalid(f"{len(models)} models are being served ({', '.join(models)}); pick one "
                          "with the header X-Amzn-SageMaker-Custom-Attributes: tfs-model-name=NAME")
        name = models[0]
    _note(request, name=name)
    version_text = attrs.get("tfs-model-version")
    if version_text is not None and not version_text.isdigit():
        raise invalid(f"tfs-model-version={version_text} is not an integer version")
    servable = ctx.manager.resolve(name, int(version_text) if version_text else None)
    _note(request, servable)
    raw = await _body(request, ctx)
    big = len(raw) > OFF_LOOP_BYTES
    content_type = request.content_type.lower()
    if content_type == "text/csv":
        body: Any = {"instances": _csv_instances(raw.decode("utf-8", "replace"), servable)}
    elif content_type in ("application/jsonlines", "application/jsonl", "application/x-ndjson"):
        body = {"instances": [parse_json(line.encode()) for line in
                              raw.decode("utf-8", "replace").splitlines() if line.strip()]}
    else:
        body = parse_json(raw)
    if isinstance(body, dict) and attrs.get("tfs-signature"):
        body.setdefault("signature_name", attrs["tfs-signature"])
    method = attrs.get("tfs-method", "predict").lower()
    if method == "classify":
        return json_response(await classify_body(servable, body, big, ctx))
    if method != "predict":
        raise invalid(f"tfs-method={method} is not supported; use predict or classify")
    return json_response(await predict_body(servable, body, big, ctx))


# -- server ---------------------------------------------------------------------------------------
async def metrics_handler(ctx: Ctx, request: web.Request, g: dict[str, str]) -> web.Response:
    # rendered in a thread: it walks every series, and health checks must not wait behind it
    body = await asyncio.get_running_loop().run_in_executor(None, ctx.metrics.render)
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def openapi_handler(ctx: Ctx, request: web.Request, g: dict[str, str]) -> web.Response:
    from serving.openapi import openapi_document

    return json_response(openapi_document())


ROUTES: list[Route] = [
    Route("GET", _p(r"/v1/models"), tfs_models, "tfs_models"),
    Route("GET", _p(rf"/v1/models/{_NAME}{_SEL}"), tfs_status, "tfs_status"),
    Route("GET", _p(rf"/v1/models/{_NAME}{_SEL}/metadata"), tfs_metadata, "tfs_metadata"),
    Route("POST", _p(rf"/v1/models/{_NAME}{_SEL}:(?P<verb>predict|classify|regress)"),
          tfs_infer, "tfs_predict"),
    Route("*", _p(r"/v1/models/[^/:]+/versions/[0-9]+/labels/.*"), tfs_both, "tfs"),
    Route("*", _p(r"/v1/models/[^/:]+/labels/[^/:]+/versions/.*"), tfs_both, "tfs"),
    Route("GET", _p(r"/v2/health/live"), v2_live, "health", auth=False),
    Route("GET", _p(r"/v2/health/ready"), v2_ready, "health", auth=False),
    Route("GET", _p(r"/v2"), v2_server, "v2_metadata"),
    Route("GET", _p(rf"/v2/models/{_NAME}{_V2SEL}/ready"), v2_model_ready, "v2_ready"),
    Route("GET", _p(rf"/v2/models/{_NAME}{_V2SEL}"), v2_model_metadata, "v2_metadata"),
    Route("POST", _p(rf"/v2/models/{_NAME}{_V2SEL}/infer"), v2_infer, "v2_infer"),
    Route("GET", _p(r"/ping"), sm_ping, "health", auth=False),
    Route("POST", _p(r"/invocations"), sm_invocations, "sagemaker"),
    Route("GET", _p(r"/metrics"), metrics_handler, "metrics"),
    Route("GET", _p(r"/openapi\.json"), openapi_handler, "openapi"),
]


def _match(method: str, path: str) -> tuple[Route, dict[str, str]] | web.Response:
    allowed: list[str] = []
    for route in ROUTES:
        m = route.pattern.fullmatch(path)
        if m is None:
            continue
        if route.method in ("*", method) or (method == "HEAD" and route.method == "GET"):
            return route, {k: v for k, v in m.groupdict().items() if v is not None}
        allowed.append(route.method)
    if allowed:
        return web.Response(
            body=codec.dumps({"error": f"{method} is not allowed on {path}; use "
                              f"{' or '.join(sorted(set(allowed)))}"}),
            status=405, content_type="application/json",
            headers={"Allow": ", ".join(sorted(set(allowed)))})
    if path.lower().startswith("/v1/"):
        return error_response(400, f"Malformed request: {method} {path}")
    return error_response(404, f"no route for {method} {path}; see /openapi.json for the API")


def _authorized(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _tf_message(exc: BaseException) -> str:
    """The informative line of a TF runtime error (not "Graph execution error:" or node dumps)."""
    lines = [line.strip() for line in str(getattr(exc, "message", exc)).splitlines()]
    useful = [line for line in lines if line and not line.startswith(("[[", "Detected at node",
              "Graph execution error", "File ", "Stack trace"))]
    return useful[-1] if useful else (lines[0] if lines else type(exc).__name__)


def _map_exception(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, ServingError):
        return exc.http_status, exc.message
    if isinstance(exc, ConnectionError):  # the client went away mid-request: not our fault
        log.debug("client disconnected: %s", exc)
        return 400, f"the connection was lost while reading the request: {exc}"
    if isinstance(exc, UnicodeDecodeError):  # TensorFlow quoting undecodable input bytes
        return 400, codec.undecodable_message(exc)
    if isinstance(exc, RecursionError):  # deeply nested input that got past parse_json's limit
        return 400, (f"the request is nested too deeply to process ({exc}); send at most "
                     f"{MAX_JSON_DEPTH} levels of arrays/objects")
    module = type(exc).__module__
    if module.startswith("tensorflow"):
        name = type(exc).__name__
        status = {"InvalidArgumentError": 400, "OutOfRangeError": 400,
                  "FailedPreconditionError": 400, "ResourceExhaustedError": 429,
                  "UnimplementedError": 501, "UnavailableError": 503,
                  "DeadlineExceededError": 504, "NotFoundError": 404}.get(name, 500)
        return status, f"{_tf_message(exc)}; check the inputs match the signature (GET .../metadata)"
    log.exception("internal error", exc_info=exc)
    return 500, f"internal error: {type(exc).__name__}: {exc}"


def make_app(manager: ModelManager, config: ServerConfig | None = None,
             metrics: Metrics | None = None, drain: Drain | None = None) -> web.Application:
    """The aiohttp application; starting and stopping the manager is the caller's job.
    ``drain``: the runtime's count of requests in progress, shared with its batchers."""
    config = config or ServerConfig()
    ctx = Ctx(manager, metrics or Metrics(), config, drain or Drain(),
              BodyBudget(config.inflight_limit))
    ctx.metrics.in_flight.set_function(lambda: ctx.drain.active)
    ctx.capture = capture.writer_for(config, ctx.metrics)

    async def dispatch(request: web.Request) -> web.StreamResponse:
        ctx.drain.enter()
        try:
            response = await handle(request)
        finally:
            ctx.drain.leave()
            ctx.budget.give(request.get(BUDGET_KEY, 0))
        if ctx.drain.draining:
            response.force_close()  # no keep-alive while shutting down
        return response

    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        path = request.rel_url.raw_path
        found = _match(request.method, path)
        api = "unknown"
        if isinstance(found, web.Response):
            response: web.StreamResponse = found
        else:
            route, groups = found
            api = route.api
            if route.auth and config.auth_token and not _authorized(request, config.auth_token):
                response = json_response(
                    {"error": "missing or wrong bearer token; send the header "
                              "'Authorization: Bearer <token>' (the server's --auth-token)"}, 401)
                response.headers["WWW-Authenticate"] = 'Bearer realm="serving"'
            else:
                try:
                    response = await within(route.handler(ctx, request, groups),
                                             config.timeout_s)
                except asyncio.TimeoutError:
                    response = error_response(504, f"request exceeded the {config.timeout_s:g} s "
                                              "deadline; send fewer instances or retry")
                except Exception as exc:  # noqa: BLE001 - every error becomes {"error": ...}
                    status, message = _map_exception(exc)
                    response = error_response(status, message)
                    if isinstance(exc, Busy):
                        response.headers["Retry-After"] = str(exc.retry_after_s)
        if api not in ("health", "metrics"):
            model, version = _metric_labels(ctx, request)
            ctx.metrics.observe(model, version, api, response.status,
                                time.perf_counter() - started)
        return response

    # aiohttp enforces client_max_size on read(); we turn its error into our 413 JSON
    app = web.Application(client_max_size=config.max_body_bytes)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    app[DRAIN_KEY] = ctx.drain
    app[CTX_KEY] = ctx
    if ctx.capture is not None:  # runner.cleanup(), after gRPC stopped: write what is queued
        writer = ctx.capture

        async def close_capture(_: web.Application) -> None:
            await asyncio.get_running_loop().run_in_executor(None, writer.close)

        app.on_cleanup.append(close_capture)
    return app

