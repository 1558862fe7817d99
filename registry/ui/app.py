"""The console's aiohttp application: pages rendered with Jinja2, a predict proxy, static assets.

The console never writes state by itself: deploy, stop, rollback and label call the same
``Registry`` methods as the CLI (its lock, its history). MLMD reads and writes run one at a time on
a dedicated thread (an MLMD connection is not shared across threads); figures are made on another,
lazily, and cached. Every response says its server time in a ``Server-Timing`` header, which
``benchmarks/ui_bench.py`` reads.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import ClientError, ClientSession, ClientTimeout, web

# Pillow is imported here, on the thread that builds the app, never first on the event loop: a
# figure's first TensorFlow import on the drawing thread and a first Pillow import on the loop
# both reach xml.parsers.expat and can deadlock on Python's module locks (a model server hung so
# in a CI run; serving.server.import_before_loading). ``make_app`` also loads the plugins any
# first open would (their C modules among them), so the loop imports nothing itself.
from PIL import Image, UnidentifiedImageError

from contracts.examples import IMAGE_HEIGHT, IMAGE_WIDTH
from datasources.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    ImageTooLarge,
    check_pixels,
    load_pillow,
)
from metastore.errors import ConflictError, InputError, NotFoundError, RegistryError
from registry.api import Registry
from registry.entities import check_label
from registry.ui import figures, monitoring, security
from registry.ui.queries import Console, dumps

HERE = Path(__file__).resolve().parent
ACTIONS = ("deploy", "stop", "rollback", "label")
SIGNATURES = ("serving_images", "serving_default")
MAX_PREDICT_BYTES = 4 * 1024 * 1024
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class UIConfig:
    registry: Registry
    pipeline_root: str
    server_url: str
    token: str
    reads_need_token: bool = False
    server_token: str | None = None
    # the Host names the console answers to (security.allowed_hosts); default: loopback names
    allowed_hosts: frozenset[str] = field(default_factory=lambda: security.allowed_hosts(
        "127.0.0.1"))
    console: Console | None = field(default=None, repr=False)


def _time(value: float | None) -> str:
    if not value:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(time=_time, number=_number, pretty=dumps)
    return env


class ConsoleApp:
    """Routes and the helpers they share."""

    def __init__(self, config: UIConfig) -> None:
        self.config = config
        self.console = config.console or Console(config.registry, config.pipeline_root)
        self.guard = security.Guard(config.token, config.reads_need_token)
        self.templates = _environment()
        self.mlmd = ThreadPoolExecutor(1, thread_name_prefix="ui-mlmd")
        self.drawing = ThreadPoolExecutor(1, thread_name_prefix="ui-figures")
        self.figures = figures.FigureCache()
        # Figures gather MLMD records on their own thread: with their own connection.
        self.figure_registry = Registry(config.registry.backend, config.registry.serving_dir)
        self.http: ClientSession | None = None

    # ------------------------------------------------------------------ plumbing
    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.mlmd, fn, *args)

    def page(self, request: web.Request, template: str, status: int = 200,
             **values: Any) -> web.Response:
        text = self.templates.get_template(template).render(
            csrf=self.guard.csrf_token(), path=request.path, query=request.query,
            has_token=self.guard.token_ok(security.presented_token(request.headers,
                                                                   request.cookies)),
            **values)
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")

    def error_page(self, request: web.Request, status: int, message: str) -> web.Response:
        return self.page(request, "error.html", status=status, status_code=status,
                         message=message)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        token = request.query.get("token")
        if not security.host_ok(request.host, self.config.allowed_hosts):
            response: web.StreamResponse = web.Response(
                status=421, content_type="text/plain",
                text=f"This console does not answer to Host {request.host!r} (a DNS rebinding "
                     "page, or a name it was not told about): open it by its bound address or "
                     "localhost, or start `mlmodel ui` with --allowed-host NAME.")
        elif token is not None and request.method == "GET":
            # Opening the printed URL: keep the token in a cookie, and drop it from the URL.
            if not self.guard.token_ok(token):
                response = self.error_page(
                    request, 403, "That token is not this console's; use the URL that "
                    "`mlmodel ui` printed when it started.")
            else:
                query = {k: v for k, v in request.query.items() if k != "token"}
                response = web.HTTPSeeOther(request.path + ("?" + urlencode(query)
                                                            if query else ""))
                response.set_cookie(security.TOKEN_COOKIE, token, httponly=True,
                                    samesite="Strict", path="/")
                return response
        elif (self.guard.reads_need_token and not request.path.startswith("/static/")
              and request.path != "/healthz"
              and not self.guard.token_ok(security.presented_token(request.headers,
                                                                   request.cookies))):
            response = self.error_page(request, 401, "This console needs its token: open the "
                                       "URL `mlmodel ui` printed, or send 'Authorization: "
                                       "Bearer TOKEN'.")
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                if exc.status >= 400 and exc.content_type != "text/html":
                    response = self.error_page(request, exc.status, exc.reason or exc.text or "")
                else:
                    raise
            except NotFoundError as exc:
                response = self.error_page(request, 404, str(exc))
            except ConflictError as exc:
                response = self.error_page(request, 409, str(exc))
            except InputError as exc:
                response = self.error_page(request, 400, str(exc))
            except RegistryError as exc:
                response = self.error_page(request, 500, str(exc))
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1e3:.1f}"
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    def check_write(self, request: web.Request, csrf: str | None) -> None:
        """Writes need the token, a CSRF token from one of our pages and our own Origin."""
        if not self.guard.token_ok(security.presented_token(request.headers, request.cookies)):
            raise web.HTTPForbidden(reason="Changing the registry needs the console's token: open "
                                    "the URL `mlmodel ui` printed at start (it sets a cookie), or "
                                    "send 'Authorization: Bearer TOKEN'.")
        if not self.guard.csrf_ok(csrf):
            raise web.HTTPForbidden(reason="The form's CSRF token is missing or stale: reload the "
                                    "page and confirm again.")
        if not security.same_origin(request.headers.get("Origin"), request.host):
            raise web.HTTPForbidden(reason="The request came from another site's page.")

    @staticmethod
    def _int(request: web.Request, key: str, default: int | None = None) -> int | None:
        value = request.query.get(key, "")
        if value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise InputError(f"{key}={value!r} is not a whole number") from None

    # ------------------------------------------------------------------ pages
    async def index(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/models")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def models(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        sort = request.query.get("sort", "name")
        descending = request.query.get("desc", "") == "1"
        offset = self._int(request, "offset", 0) or 0
        table = await self.read(self.console.models, query, sort, descending, offset)
        return self.page(request, "models.html", table=table, q=query, sort=sort,
                         desc=descending)

    async def model(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        data = await self.read(self.console.model_page, name)
        return self.page(request, "model.html", name=name, message=request.query.get("done", ""),
                         **data)

    async def confirm(self, request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]
        if action not in ACTIONS:
            raise NotFoundError(f"no action {action!r}; choose from {', '.join(ACTIONS)}")
        versions = await self.read(self.config.registry.versions, name)
        summary = await self.read(self.config.registry.summary, name)
        return self.page(request, "confirm.html", name=name, action=action, versions=versions,
                         summary=summary, version=request.query.get("version", ""),
                         label=request.query.get("label", ""))

    async def act(self, request: web.Request) -> web.StreamResponse:
        name, action = request.match_info["name"], request.match_info["action"]
        if action not in ACTIONS:
            raise NotFoundError(f"no action {action!r}; choose from {', '.join(ACTIONS)}")
        form = await request.post()
        self.check_write(request, str(form.get(security.CSRF_FIELD, "")))
        registry = self.config.registry
        label = str(form.get("label", "") or "").strip() or None
        version_text = str(form.get("version", "") or "").strip()
        try:
            version = int(version_text) if version_text else None
        except ValueError:
            raise InputError(f"version {version_text!r} is not a whole number") from None
        user = "ui"
        if action == "deploy":
            result = await self.read(lambda: registry.deploy(name, label=label, user=user))
            done = f"deployed version {result.latest_version}"
        elif action == "stop":
            await self.read(lambda: registry.stop(name, user=user))
            done = "stopped serving"
        elif action == "rollback":
            back = await self.read(lambda: registry.rollback(name, version, user=user))
            done = f"rolled back to version {back}"
        else:
            if label is None or version is None:
                raise InputError("a label needs a name and a version")
            await self.read(lambda: registry.label(name, label, version, user=user))
            done = f"label {label} now points at version {version}"
        raise web.HTTPSeeOther(f"/models/{name}?" + urlencode({"done": done}))

    async def figure(self, request: web.Request) -> web.StreamResponse:
        name, kind = request.match_info["name"], request.match_info["kind"]
        if kind not in figures.MODEL_FIGURES:
            raise NotFoundError(f"no figure {kind!r}; figures: {', '.join(figures.MODEL_FIGURES)}")
        summary = await self.read(self.config.registry.summary, name)
        model_id = summary.lineage.get("model_artifact_id")
        if not model_id:
            raise NotFoundError(f"model {name!r} has no trained model to draw figures of")

        def make() -> dict[str, bytes | None]:
            return figures.model_figures(self.figure_registry, name)

        made = await asyncio.get_running_loop().run_in_executor(
            self.drawing, self.figures.get, ("model", name, int(model_id)), make)
        data = made.get(kind)
        if data is None:  # an image that says why, not a broken one
            return web.Response(body=figures.nothing_to_draw(kind).encode(),
                                content_type="image/svg+xml",
                                headers={"Cache-Control": "private, max-age=3600"})
        return web.Response(body=data, content_type="image/png",
                            headers={"Cache-Control": "private, max-age=3600"})

    async def lineage(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        version = self._int(request, "version")
        graph, start = await self.read(self.console.lineage, name, version)
        versions = await self.read(self.config.registry.versions, name)
        return self.page(request, "lineage.html", name=name, graph=graph, start=start,
                         versions=versions, version=version)

    async def runs(self, request: web.Request) -> web.Response:
        before = self._int(request, "before")
        pipeline = request.query.get("pipeline", "")
        rows, next_before = await self.read(self.console.runs, before, pipeline)
        return self.page(request, "runs.html", rows=rows, next_before=next_before,
                         pipeline=pipeline)

    async def run(self, request: web.Request) -> web.Response:
        detail = await self.read(self.console.run, self._path_int(request, "run_id"))
        return self.page(request, "run.html", detail=detail)

    @staticmethod
    def _path_int(request: web.Request, key: str) -> int:
        value = request.match_info[key]
        if not value.isdigit() or len(value) > 18:
            raise NotFoundError(f"{value!r} is not an id")
        return int(value)

    async def artifact(self, request: web.Request) -> web.Response:
        detail = await self.read(self.console.artifact, self._path_int(request, "artifact_id"))
        run_ids = {}
        for name in detail.runs:
            run_ids[name] = await self.read(self.console.run_id_named, name)
        return self.page(request, "artifact.html", detail=detail, run_ids=run_ids)

    async def gallery(self, request: web.Request) -> web.StreamResponse:
        detail = await self.read(self.console.artifact, self._path_int(request, "artifact_id"))
        if not detail.is_examples:
            raise NotFoundError(f"artifact {detail.artifact.id} is not an Examples artifact")
        if not detail.readable:
            raise web.HTTPForbidden(reason=f"artifact {detail.artifact.id}'s files are outside the "
                                    "pipeline root and the serving dir; the console does not "
                                    "read them")
        uri = detail.artifact.uri
        made = await asyncio.get_running_loop().run_in_executor(
            self.drawing, self.figures.get, ("gallery", int(detail.artifact.id)),
            lambda: {"png": figures.examples_gallery(uri)})
        return web.Response(body=made["png"], content_type="image/png",
                            headers={"Cache-Control": "private, max-age=3600"})

    async def execution(self, request: web.Request) -> web.StreamResponse:
        execution_id = self._path_int(request, "execution_id")
        run_id = await self.read(self.console.execution_run, execution_id)
        if run_id is not None:
            raise web.HTTPFound(f"/runs/{run_id}#component-{execution_id}")
        model = await self.read(self.console.execution_model, execution_id)
        if model is not None:
            raise web.HTTPFound(f"/models/{model}#history")
        raise NotFoundError(f"execution {execution_id} belongs to no run or model")

    async def predict_page(self, request: web.Request) -> web.Response:
        table = await self.read(self.console.models, "", "name", False, 0, 1000)
        chosen = request.query.get("model", "")
        if not chosen:
            chosen = next((r.name for r in table.rows if r.serving), "")
        return self.page(request, "predict.html", models=table.rows, chosen=chosen,
                         server_url=self.config.server_url, signatures=SIGNATURES,
                         version=request.query.get("version", ""),
                         label=request.query.get("label", ""))

    # ------------------------------------------------------------------ predict proxy
    async def predict(self, request: web.Request) -> web.Response:
        if not self.guard.token_ok(security.presented_token(request.headers, request.cookies)):
            # the proxy adds the model server's token: using it is as privileged as a write
            return web.json_response({"error": "predicting through the console needs its "
                                      "token: open the URL `mlmodel ui` printed at start (it "
                                      "sets a cookie), or send 'Authorization: Bearer TOKEN'"},
                                     status=403)
        if not self.guard.csrf_ok(request.headers.get(security.CSRF_HEADER)) or \
                not security.same_origin(request.headers.get("Origin"), request.host):
            return web.json_response({"error": "missing or stale CSRF token: reload the page"},
                                     status=403)
        try:
            body = await request.json()
            name = str(body["model"])
            image = base64.b64decode(str(body["image_b64"]), validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            return web.json_response({"error": "send JSON with model and image_b64 (a base64 "
                                      "PNG or JPEG)"}, status=400)
        signature = str(body.get("signature") or SIGNATURES[0])
        if signature not in SIGNATURES:
            return web.json_response({"error": f"signature {signature!r}: choose "
                                      f"{' or '.join(SIGNATURES)}"}, status=400)
        version = body.get("version")
        label = str(body.get("label") or "")
        summary = await self.read(self.config.registry.summary, name)
        target = (f"{self.config.server_url.rstrip('/')}/v1/models/"
                  f"{quote(summary.serving_name, safe='')}")
        if version not in (None, ""):
            if isinstance(version, bool) or not str(version).isdigit() or len(str(version)) > 18:
                return web.json_response({"error": f"version {version!r} is not a whole number"},
                                         status=400)
            target += f"/versions/{int(version)}"
        elif label:
            try:
                check_label(label)
            except InputError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            target += f"/labels/{quote(label, safe='')}"
        try:  # from the header, before Pillow (or the server) decodes it
            check_pixels(image, "the image", DEFAULT_MAX_IMAGE_PIXELS)
        except ImageTooLarge as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if signature == "serving_images":
            payload = {"signature_name": signature,
                       "instances": [{"b64": base64.b64encode(image).decode("ascii")}]}
        else:
            try:
                pixels = _grey_pixels(image)
            except ValueError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            payload = {"signature_name": signature, "instances": [pixels]}
        headers = {"Authorization": f"Bearer {self.config.server_token}"} \
            if self.config.server_token else {}
        if self.http is None:
            self.http = ClientSession(timeout=ClientTimeout(total=30))
        try:
            async with self.http.post(f"{target}:predict", json=payload,
                                      headers=headers) as response:
                text = await response.text()
                status = response.status
        except (ClientError, OSError, asyncio.TimeoutError) as exc:
            return web.json_response({
                "error": f"no model server answers at {self.config.server_url} ({exc})",
                "hint": "start one: serving start --serving-dir "
                        f"{self.config.registry.serving_dir} (then reload this page)"},
                status=503)
        try:
            answer = json.loads(text)
        except ValueError:
            answer = {"error": text[:300]}
        if status != 200:
            return web.json_response({"error": f"the model server said HTTP {status}: "
                                      f"{answer.get('error', answer)}"}, status=502)
        probabilities = [float(p) for p in answer["predictions"][0]]
        names = list(summary.class_names) or [str(i) for i in range(len(probabilities))]
        return web.json_response({"model": name, "serving_name": summary.serving_name,
                                  "url": target, "signature": signature,
                                  "probabilities": probabilities,
                                  "class_names": names[:len(probabilities)]})

    async def close(self, _app: web.Application) -> None:
        if self.http is not None:
            await self.http.close()
        self.mlmd.shutdown(wait=False)
        self.drawing.shutdown(wait=False)


def _grey_pixels(image: bytes) -> list[list[list[float]]]:
    """A PNG/JPEG as the ``serving_default`` input: 28 x 28 x 1 greys in [0, 1]."""
    try:
        picture = Image.open(io.BytesIO(image)).convert("L").resize((IMAGE_WIDTH, IMAGE_HEIGHT))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"the image could not be read ({exc}); send a PNG or JPEG") from None
    data = list(picture.getdata())
    return [[[data[r * IMAGE_WIDTH + c] / 255.0] for c in range(IMAGE_WIDTH)]
            for r in range(IMAGE_HEIGHT)]


def make_app(config: UIConfig) -> web.Application:
    load_pillow()  # the plugins the first predict would import on the loop
    console = ConsoleApp(config)
    app = web.Application(middlewares=[console.middleware], client_max_size=MAX_PREDICT_BYTES)
    app["console"] = console
    app.router.add_get("/", console.index)
    app.router.add_get("/healthz", console.healthz)
    app.router.add_get("/models", console.models)
    app.router.add_get("/models/{name}", console.model)
    app.router.add_get("/models/{name}/confirm/{action}", console.confirm)
    app.router.add_post("/models/{name}/actions/{action}", console.act)
    app.router.add_get("/models/{name}/figures/{kind}.png", console.figure)
    app.router.add_get("/models/{name}/lineage", console.lineage)
    app.router.add_get("/runs", console.runs)
    app.router.add_get("/runs/{run_id}", console.run)
    app.router.add_get("/artifacts/{artifact_id}", console.artifact)
    app.router.add_get("/artifacts/{artifact_id}/gallery.png", console.gallery)
    app.router.add_get("/executions/{execution_id}", console.execution)
    app.router.add_get("/predict", console.predict_page)
    app.router.add_post("/api/predict", console.predict)
    monitoring.register(app, console)  # /models/{name}/monitoring...
    app.router.add_static("/static/", str(HERE / "static"), follow_symlinks=False)
    app.on_cleanup.append(console.close)
    return app
