"""The console's monitoring: what ``mlmodel monitor`` stored, on the model page and its own page.

Routes (added by ``register``, one line in ``make_app``):

* ``/models/{name}/monitoring``: the newest report's drift per feature (divergence, threshold),
  the class mix against the training labels, the predicted-class mix over time, the
  lowest-confidence captured images, and every stored report with a link to its JSON;
* ``/models/{name}/monitoring/reports/{id}.json``: a stored report as ``mlmodel monitor``
  printed it (``latest.json``: the newest);
* ``/models/{name}/monitoring/{drift,mix,lowest}.png``: the figures the model page shows (an
  SVG saying why when there is no report yet).

The gallery reads the captured images back from the files the report names, and only those:
finished capture files (``contracts.capture.is_capture_file``) in the report's capture folder.
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

from aiohttp import web

from contracts import capture as layout
from metastore.errors import NotFoundError
from registry import monitor_store

FIGURES = ("drift", "mix", "lowest")
NOTHING = "No monitor report yet: run `mlmodel monitor NAME` on the captured requests."
REPORTS_SHOWN = 20


def nothing_svg() -> str:
    from html import escape

    return ('<svg xmlns="http://www.w3.org/2000/svg" width="520" height="60" viewBox="0 0 520 60">'
            '<rect width="520" height="60" fill="#f6f8fa"/><text x="12" y="35" font-size="13" '
            f'font-family="sans-serif" fill="#656d76">{escape(NOTHING)}</text></svg>')


def _png(fig: Any) -> bytes:
    from registry import report_render as draw

    return base64.b64decode(draw._png(fig))


def figure_drift(report: dict[str, Any]) -> bytes:
    """Horizontal bars: each feature's divergence, its threshold marked, drifted ones red."""
    from registry import report_render as draw

    plt = draw._pyplot()
    rows = report["features"]
    fig, ax = plt.subplots(figsize=(6.4, 0.38 * len(rows) + 0.9))
    names = [r["feature"] for r in rows]
    ax.barh(names, [r["divergence"] for r in rows],
            color=["#cf222e" if r["drifted"] else "#2da44e" for r in rows])
    ax.scatter([r["threshold"] for r in rows], names, marker="|", s=300, color="#24292f",
               label="threshold", zorder=3)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("divergence (JSD, L-infinity, or share)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"version {report['version']}: {report['requests']:,} requests", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def figure_mix(report: dict[str, Any]) -> bytes:
    """Stacked bars: the predicted-class shares per hour, then the training labels' shares."""
    import time

    from registry import report_render as draw

    plt = draw._pyplot()
    names = report["class_names"]
    rows = report["mix_over_time"]
    labels = [time.strftime("%m-%d %H:00", time.gmtime(r["start"])) for r in rows] + ["training"]
    shares = [[r["shares"].get(n, 0.0) for r in rows] + [c["training"] for c in report["class_mix"]
                                                          if c["class"] == n][:1]
              for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(labels) + 2.5), 3.4))
    bottom = [0.0] * len(labels)
    colours = plt.get_cmap("tab20")
    for index, (name, values) in enumerate(zip(names, shares, strict=True)):
        ax.bar(labels, values, bottom=bottom, label=name, color=colours(index % 20))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of predictions")
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return _png(fig)


def lowest_images(report: dict[str, Any]) -> list[tuple[Any, str]]:
    """The report's lowest-confidence images, read back from its capture folder."""
    from registry.monitor_capture import read_captured

    folder = report["capture_folder"]
    wanted = report["lowest_confidence"]
    names = sorted({w["source"].partition("#")[0] for w in wanted})
    files = [os.path.join(folder, n) for n in names if layout.is_capture_file(n)
             and os.path.isfile(os.path.join(folder, n))]
    captured = read_captured(files, report["class_names"])
    where = {source: i for i, source in enumerate(captured.sources)}
    return [(captured.pixels[where[w["source"]]], f"{w['predicted']} {w['confidence']:.2f}")
            for w in wanted if w["source"] in where]


def figure_lowest(report: dict[str, Any]) -> bytes:
    from registry import report_render as draw

    plt = draw._pyplot()
    images = lowest_images(report)
    columns = 8
    rows = max(1, (len(images) + columns - 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, title) in zip(axes.flat, images, strict=False):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=8)
    return _png(fig)


DRAW = {"drift": figure_drift, "mix": figure_mix, "lowest": figure_lowest}


class Monitoring:
    """The routes, on the console's MLMD thread, drawing thread and figure cache."""

    def __init__(self, console: Any) -> None:
        self.console = console

    @property
    def registry(self) -> Any:
        return self.console.config.registry

    async def _newest(self, name: str) -> dict[str, Any] | None:
        rows = await self.console.read(monitor_store.latest_reports, self.registry, name, 1,
                                       None, True)
        return rows[0] if rows else None

    async def page(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        reports = await self.console.read(monitor_store.latest_reports, self.registry, name,
                                          REPORTS_SHOWN)
        newest = await self._newest(name)
        return self.console.page(request, "monitoring.html", name=name, reports=reports,
                                 newest=newest["report"] if newest else None,
                                 newest_id=newest["report_artifact_id"] if newest else None)

    async def report(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        report_id = self.console._path_int(request, "report_id")
        found = await self.console.read(monitor_store.report_by_id, self.registry, name,
                                        report_id)
        if found is None:
            raise NotFoundError(f"model {name!r} has no monitor report {report_id}")
        return web.json_response(found)

    async def latest(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        newest = await self._newest(name)
        if newest is None:
            raise NotFoundError(f"model {name!r} has no monitor report yet; run `mlmodel "
                                f"monitor {name}`")
        raise web.HTTPSeeOther(f"/models/{name}/monitoring/reports/"
                               f"{newest['report_artifact_id']}.json")

    async def figure(self, request: web.Request) -> web.StreamResponse:
        name, kind = request.match_info["name"], request.match_info["kind"]
        if kind not in FIGURES:
            raise NotFoundError(f"no figure {kind!r}; figures: {', '.join(FIGURES)}")
        newest = await self._newest(name)
        if newest is None:
            return web.Response(body=nothing_svg().encode(), content_type="image/svg+xml")
        report = newest["report"]
        made = await asyncio.get_running_loop().run_in_executor(
            self.console.drawing, self.console.figures.get,
            ("monitor", name, newest["report_artifact_id"], kind),
            lambda: {"png": DRAW[kind](report)})
        return web.Response(body=made["png"], content_type="image/png",
                            headers={"Cache-Control": "private, max-age=3600"})


def register(app: web.Application, console: Any) -> None:
    """Add the monitoring routes to the console's ``app``."""
    routes = Monitoring(console)
    app.router.add_get("/models/{name}/monitoring", routes.page)
    app.router.add_get("/models/{name}/monitoring/latest.json", routes.latest)
    app.router.add_get("/models/{name}/monitoring/reports/{report_id}.json", routes.report)
    app.router.add_get("/models/{name}/monitoring/{kind}.png", routes.figure)
