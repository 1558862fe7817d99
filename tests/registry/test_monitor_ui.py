"""The console's monitoring section and page, in-process (aiohttp's test client), on a stored
``mlmodel monitor`` report of the tiny run's deployed version."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from contracts.examples import DIGIT_CLASS_NAMES
from tests.datagen import synthetic_images
from tests.registry.capture_files import confident, write_capture
from tests.registry.test_monitor import SERVING_NAME, Deployed, deployed  # noqa: F401


def _get_all(deployed: Deployed, paths: list[str]) -> list[tuple[int, str, bytes]]:  # noqa: F811
    from aiohttp.test_utils import TestClient, TestServer

    from registry.api import open_registry
    from registry.ui.app import UIConfig, make_app

    async def run() -> list[tuple[int, str, bytes]]:
        config = UIConfig(registry=open_registry(deployed.metadata, deployed.serving_dir),
                          pipeline_root=deployed.run.pipeline_root,
                          server_url="http://127.0.0.1:9", token="t")
        async with TestClient(TestServer(make_app(config))) as client:
            out = []
            for path in paths:
                response = await client.get(path, allow_redirects=True)
                out.append((response.status, response.content_type, await response.read()))
            return out

    return asyncio.run(run())


def test_no_report_yet_says_so(deployed: Deployed) -> None:  # noqa: F811
    [(status, _, body), (figure_status, kind, _)] = _get_all(
        deployed, ["/models/tiny/monitoring", "/models/tiny/monitoring/drift.png"])
    assert status == 200 and b'id="no-report"' in body
    assert figure_status == 200 and kind == "image/svg+xml"


def test_monitoring_section_page_figures_and_report(deployed: Deployed,  # noqa: F811
                                                    tmp_path: Path) -> None:
    from registry.api import open_registry
    from registry.monitor_run import MonitorRequest, run_monitor
    from registry.monitor_store import record_report

    labels = np.random.default_rng(2).integers(0, 10, 80)
    unsure = confident(labels, confidence=0.4)
    unsure[:5] = confident(labels[:5], confidence=0.2)
    write_capture(str(tmp_path), SERVING_NAME, 1, 255 - synthetic_images(labels.tolist(), seed=3),
                  unsure, class_names=DIGIT_CLASS_NAMES)
    reg = open_registry(deployed.metadata, deployed.serving_dir)
    result = run_monitor(reg, MonitorRequest(name="tiny", capture_dir=str(tmp_path)))
    report_id = record_report(reg, result.report, result.target.deployment,
                              result.training_artifact, "root")
    model, page, report, latest, drift, mix, lowest = _get_all(deployed, [
        "/models/tiny", "/models/tiny/monitoring",
        f"/models/tiny/monitoring/reports/{report_id}.json",
        "/models/tiny/monitoring/latest.json", "/models/tiny/monitoring/drift.png",
        "/models/tiny/monitoring/mix.png", "/models/tiny/monitoring/lowest.png"])
    assert model[0] == 200 and b'id="monitoring"' in model[2]
    assert b"/models/tiny/monitoring/lowest.png" in model[2]
    assert page[0] == 200 and b'data-feature="mean_intensity" class="drifted"' in page[2]
    assert f"/monitoring/reports/{report_id}.json".encode() in page[2]
    assert b'id="mix-over-time"' in page[2]
    import json

    stored = json.loads(report[2])
    assert report[0] == 200 and stored["requests"] == 80 and "mean_intensity" in stored["drifted"]
    assert json.loads(latest[2]) == stored
    for status, kind, body in (drift, mix, lowest):
        assert status == 200 and kind == "image/png" and body.startswith(b"\x89PNG")
    # the gallery shows the least confident captured images, read back from the capture file
    from registry.ui.monitoring import lowest_images

    shown = lowest_images(stored)
    assert len(shown) == 24 and shown[0][1].endswith("0.20")
    np.testing.assert_array_equal(shown[0][0], 255 - synthetic_images(labels.tolist(), seed=3)[0])


def test_unknown_report_is_404(deployed: Deployed) -> None:  # noqa: F811
    [(status, _, _)] = _get_all(deployed, ["/models/tiny/monitoring/reports/999999.json"])
    assert status == 404
