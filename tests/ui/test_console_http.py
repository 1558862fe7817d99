"""`mlmodel ui` over plain HTTP: every page, the write rules, escaping and paths (issue 12)."""

from __future__ import annotations

import html
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from tests.ui.conftest import ROOT, TOKEN, XSS_NAME, XSS_PROPERTY, Console, _env

pytestmark = pytest.mark.slow


def links(text: str, prefix: str) -> list[str]:
    return re.findall(rf'href="({re.escape(prefix)}[^"#?]*)', text)


def csrf_of(session: requests.Session, url: str) -> str:
    page = session.get(url, timeout=30).text
    match = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page)
    assert match, page[:500]
    return match.group(1)


def test_every_page_renders_from_the_registry_and_mlmd(console: Console) -> None:
    session = requests.Session()
    models = session.get(f"{console.url}/models", timeout=30)
    assert models.status_code == 200 and f">{console.model}</a>" in models.text
    assert "Server-Timing" in models.headers
    model = session.get(f"{console.url}/models/{console.model}", timeout=30).text
    assert f'id="current-version">{console.first_version}<' in model and "stable" in model
    assert "Metrics across versions" in model and "metrics-per-class" in model
    assert "zero" in model  # per-class rows carry the class names
    lineage = session.get(f"{console.url}/models/{console.model}/lineage", timeout=30).text
    for kind in ("Examples", "ExampleStatistics", "Schema", "ExampleAnomalies", "TransformGraph",
                 "Model", "ModelEvaluation", "ModelBlessing", "PushedModel", "Deployment"):
        assert f">{kind}</a>" in lineage, kind
    for href in set(links(lineage, "/artifacts/")):
        assert session.get(console.url + href, timeout=30).status_code == 200, href
    runs = session.get(f"{console.url}/runs", params={"pipeline": console.model}, timeout=30).text
    assert "hostile" not in runs and "&lt;script&gt;" not in runs  # the filter keeps one pipeline
    # The run that trained the model (other tests may have added failed or cached runs since).
    from registry.api import open_registry

    trained_in = open_registry(console.metadata, console.serving_dir).summary(
        console.model).lineage["pipeline_run"]
    found = re.search(rf'href="(/runs/\d+)">{re.escape(trained_in)}<', runs)
    assert found, f"run {trained_in} is not on the runs page"
    detail = session.get(console.url + found.group(1), timeout=30).text
    for component in ("ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator",
                      "Transform", "Trainer", "Evaluator", "Pusher"):
        assert component in detail, component
    predict = session.get(f"{console.url}/predict", timeout=30).text
    assert 'id="pad"' in predict and console.model in predict


def test_figures_and_the_examples_gallery_are_pngs(console: Console) -> None:
    for kind in ("curves", "confusion", "per_class"):
        figure = requests.get(f"{console.url}/models/{console.model}/figures/{kind}.png",
                              timeout=300)
        assert figure.status_code == 200, figure.text[:300]
        assert figure.headers["Content-Type"] == "image/png" and figure.content[:4] == b"\x89PNG"
    lineage = requests.get(f"{console.url}/models/{console.model}/lineage", timeout=30).text
    examples = re.search(r'href="/artifacts/(\d+)">Examples<', lineage)
    assert examples
    gallery = requests.get(f"{console.url}/artifacts/{examples.group(1)}/gallery.png", timeout=120)
    assert gallery.status_code == 200 and gallery.content[:4] == b"\x89PNG"


def test_writes_need_the_token_the_csrf_token_and_our_origin(console: Console) -> None:
    url = f"{console.url}/models/{console.model}/actions/label"
    anonymous = requests.Session()
    csrf = csrf_of(anonymous, f"{console.url}/models")
    form = {"csrf": csrf, "label": "canary", "version": str(console.first_version)}
    refused = anonymous.post(url, data=form, timeout=30, allow_redirects=False)
    assert refused.status_code == 403 and "token" in refused.text
    holder = requests.Session()
    opened = holder.get(f"{console.url}/models?token={TOKEN}", timeout=30)
    assert opened.status_code == 200 and "token=" not in opened.url  # dropped from the URL
    assert holder.post(url, data={**form, "csrf": "0" * 64}, timeout=30,
                       allow_redirects=False).status_code == 403
    assert holder.post(url, data=form, timeout=30, allow_redirects=False,
                       headers={"Origin": "http://evil.example"}).status_code == 403
    done = holder.post(url, data=form, timeout=30, allow_redirects=False,
                       headers={"Origin": console.url})
    assert done.status_code == 303, done.text[:300]
    page = holder.get(console.url + done.headers["Location"], timeout=30).text
    assert f"label canary now points at version {console.first_version}" in page
    history = subprocess.run(
        [sys.executable, "-m", "registry", "history", console.model, "--metadata",
         console.metadata, "--serving-dir", console.serving_dir, "--output", "json"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, check=True).stdout
    assert '"label": "canary"' in history and '"user": "ui"' in history


def test_names_and_properties_are_escaped(console: Console) -> None:
    listing = requests.get(f"{console.url}/models", params={"q": "script"}, timeout=30).text
    assert XSS_NAME not in listing and html.escape(XSS_NAME) in listing
    page = requests.get(f"{console.url}/models/{requests.utils.quote(XSS_NAME, safe='')}",
                        timeout=30)
    assert page.status_code == 400 and XSS_NAME not in page.text  # the registry refuses the name
    runs = requests.get(f"{console.url}/runs", timeout=30).text
    assert XSS_NAME not in runs and html.escape(XSS_NAME) in runs
    # The hostile pipeline's Model artifact: its markup property is shown as text.
    newest_models = [int(i) for i in re.findall(r'href="/artifacts/(\d+)">model: Model', "".join(
        requests.get(console.url + r, timeout=30).text for r in links(runs, "/runs/")[:2]))]
    shown = [requests.get(f"{console.url}/artifacts/{i}", timeout=30).text for i in newest_models]
    hostile = [text for text in shown if "note" in text]
    assert hostile and XSS_PROPERTY not in hostile[0]
    assert "&lt;img src=x onerror=" in hostile[0]


def test_paths_never_leave_the_pipeline_root_or_the_static_folder(console: Console) -> None:
    for path in ("/static/../registry/api.py", "/static/%2e%2e/registry/api.py",
                 "/static/..%2fregistry%2fapi.py", "/artifacts/..%2f..%2fetc%2fpasswd",
                 "/artifacts/-1", "/runs/1e3", "/models/x/figures/..%2f..%2fetc.png"):
        response = requests.get(console.url + path, timeout=30)
        assert response.status_code in (400, 403, 404), path
        assert "import" not in response.text and "root:" not in response.text, path
    # An Examples artifact whose files are elsewhere: the gallery refuses to read them.
    from ml_metadata.proto import metadata_store_pb2 as pb

    from benchmarks.tfx_records import connect

    store = connect(console.metadata)
    [examples_type] = [t for t in store.get_artifact_types() if t.name == "Examples"]
    [outside] = store.put_artifacts([pb.Artifact(type_id=examples_type.id, uri="/etc",
                                                 state=pb.Artifact.LIVE)])
    assert requests.get(f"{console.url}/artifacts/{outside}/gallery.png",
                        timeout=30).status_code == 403
    assert "does not read them" in requests.get(f"{console.url}/artifacts/{outside}",
                                                timeout=30).text


def test_a_non_loopback_host_needs_a_token(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "registry", "ui", "--host", "0.0.0.0", "--metadata",
         str(tmp_path / "m.sqlite")], cwd=ROOT, env={k: v for k, v in _env().items()
                                                     if k != "MLMODEL_UI_TOKEN"},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--auth-token" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_page_routes_never_import_tensorflow(console: Console) -> None:
    script = f"""
import asyncio, sys
from aiohttp.test_utils import TestClient, TestServer
from registry.api import open_registry
from registry.ui.app import UIConfig, make_app

async def main():
    config = UIConfig(open_registry({console.metadata!r}, {console.serving_dir!r}), "/nonexistent",
                      "http://127.0.0.1:9", "t")
    async with TestClient(TestServer(make_app(config))) as client:
        for path in ["/models", "/models/{console.model}", "/models/{console.model}/lineage",
                     "/runs", "/runs?before=999999", "/predict", "/artifacts/1",
                     "/models/{console.model}/confirm/deploy"]:
            response = await client.get(path)
            assert response.status == 200, (path, response.status, await response.text())
    print("tensorflow" in sys.modules, "tfx" in sys.modules)

asyncio.run(main())
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "False"]


IMPORTS_ON_THE_LOOP = """
import asyncio
from aiohttp.test_utils import TestClient, TestServer
from registry.api import open_registry
from registry.ui.app import UIConfig, make_app
from tests.loop_imports import MainThreadImports

async def main():
    config = UIConfig(open_registry(METADATA, SERVING), "/nonexistent", "http://127.0.0.1:9", "t")
    app = make_app(config)
    # codecs found by name (encodings.*: pure Python, importing only codecs) aside
    on_loop = MainThreadImports(skip=("encodings.",)).install()
    async with TestClient(TestServer(app)) as client:
        for path in ["/models", "/models/" + MODEL, "/predict", "/runs"]:
            assert (await client.get(path)).status == 200, path
        page = await (await client.get("/predict", headers={"Authorization": "Bearer t"})).text()
        csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
        for kind, image in IMAGES.items():
            for signature in ("serving_default", "serving_images"):
                answer = await client.post("/api/predict", json={
                    "model": MODEL, "image_b64": image, "signature": signature},
                    headers={"Authorization": "Bearer t", "X-CSRF-Token": csrf})
                assert answer.status == 503, (kind, signature, await answer.text())
    print(" ".join(sorted(set(on_loop.names))) or "-")

asyncio.run(main())
"""


def test_the_event_loop_imports_no_module_itself(
        console_registry: tuple[str, str, str, int]) -> None:
    """A first import on the console's loop can deadlock with the drawing thread's first
    TensorFlow import (Pillow and TensorFlow both reach xml.parsers.expat; a model server hung
    so): pages and predictions through the proxy (decoded, then refused by a dead server) import
    nothing on the loop once the app is built."""
    import base64
    import io

    from PIL import Image

    images = {}
    for kind in ("PNG", "JPEG"):  # made here: the probe itself must not import Pillow
        out = io.BytesIO()
        Image.new("L" if kind == "PNG" else "RGB", (28, 28)).save(out, kind)
        images[kind] = base64.b64encode(out.getvalue()).decode()
    metadata, serving, model, _ = console_registry
    script = (f"METADATA, SERVING, MODEL, IMAGES = {metadata!r}, {serving!r}, {model!r}, "
              f"{images!r}\n" + IMPORTS_ON_THE_LOOP)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["-"], result.stdout


def test_ui_and_cli_writers_interleave_safely(console: Console) -> None:
    """One writer of each kind: versions stay unique and dense, every deploy is in the history."""
    holder = requests.Session()
    holder.get(f"{console.url}/models?token={TOKEN}", timeout=30)
    csrf = csrf_of(holder, f"{console.url}/models")
    before = len(_versions(console))
    failures: list[str] = []

    def ui_writer() -> None:
        for _ in range(3):
            response = holder.post(f"{console.url}/models/{console.model}/actions/deploy",
                                   data={"csrf": csrf}, timeout=120, allow_redirects=False)
            if response.status_code != 303:
                failures.append(response.text[:300])

    thread = threading.Thread(target=ui_writer)
    thread.start()
    for _ in range(3):
        subprocess.run([sys.executable, "-m", "registry", "deploy", console.model, "--metadata",
                        console.metadata, "--serving-dir", console.serving_dir],
                       cwd=ROOT, env=_env(), check=True, capture_output=True, timeout=300)
    thread.join()
    assert not failures
    versions = _versions(console)
    assert len(versions) == before + 6
    assert versions == list(range(console.first_version, console.first_version + len(versions)))


def _versions(console: Console) -> list[int]:
    from registry.api import open_registry

    return sorted(v.version for v in open_registry(console.metadata,
                                                   console.serving_dir).versions(console.model))


def _launch(console: Console, tmp_path: Path, *args: str,
            env_extra: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str, Path]:
    from serving.server import free_port
    from tests.server_process import wait_ready

    port = free_port()
    log = tmp_path / f"ui-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "registry", "ui", "--port", str(port), "--metadata",
             console.metadata, "--serving-dir", console.serving_dir, *args],
            cwd=ROOT, env={**_env(), **(env_extra or {})}, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, log=log, path="/healthz")
    return proc, url, log


def test_the_printed_url_holds_a_fresh_token(console: Console, tmp_path: Path) -> None:
    """`mlmodel ui` without a token makes one, prints the URL to open, and that URL allows
    changes from then on (a cookie); the page without it stays read-only."""
    from tests.ui.conftest import stop

    proc, url, log = _launch(console, tmp_path)
    try:
        printed = re.search(r"(http://127\.0\.0\.1:\d+/\?token=(\S+))", log.read_text())
        assert printed, log.read_text()
        assert len(printed.group(2)) >= 24 and printed.group(2) != TOKEN
        reader = requests.Session()
        assert "read-only" in reader.get(f"{url}/models", timeout=30).text
        holder = requests.Session()
        assert "changes allowed" in holder.get(printed.group(1), timeout=30).text
        done = holder.post(f"{url}/models/{console.model}/actions/label",
                           data={"csrf": csrf_of(holder, f"{url}/models"), "label": "fresh",
                                 "version": str(console.first_version)},
                           timeout=30, allow_redirects=False)
        assert done.status_code == 303, done.text[:300]
    finally:
        stop(proc)


def test_off_loopback_every_page_needs_the_token(console: Console, tmp_path: Path) -> None:
    from tests.ui.conftest import stop

    proc, url, _ = _launch(console, tmp_path, "--host", "0.0.0.0",
                           env_extra={"MLMODEL_UI_TOKEN": "off-loopback-secret"})
    try:
        assert requests.get(f"{url}/models", timeout=30).status_code == 401
        assert requests.get(f"{url}/runs", timeout=30).status_code == 401
        bearer = {"Authorization": "Bearer off-loopback-secret"}
        assert requests.get(f"{url}/models", headers=bearer, timeout=30).status_code == 200
        assert requests.get(f"{url}/models", headers={"Authorization": "Bearer nope"},
                            timeout=30).status_code == 401
        assert requests.get(f"{url}/static/console.css", timeout=30).status_code == 200
    finally:
        stop(proc)


def test_help_names_every_option_with_examples() -> None:
    shown = subprocess.run([sys.executable, "-m", "registry", "ui", "--help"], cwd=ROOT,
                           env=_env(), capture_output=True, text=True, timeout=60, check=True).stdout
    for option in ("--host", "--port", "--auth-token", "--pipeline-root", "--server-url",
                   "--server-token", "MLMODEL_UI_TOKEN", "Examples:"):
        assert option in shown, option


def test_the_predict_proxy_takes_a_version_or_a_label(console: Console) -> None:
    import base64
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    session = requests.Session()
    session.get(f"{console.url}/predict?token={TOKEN}", timeout=30)  # the proxy needs it
    headers = {"X-CSRF-Token": csrf_of(session, f"{console.url}/predict")}
    url = f"{console.url}/api/predict"
    for choice in ({"label": "stable"}, {"version": console.first_version}, {}):
        answer = session.post(url, json={"model": console.model, "image_b64": image, **choice},
                              headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["probabilities"]) == len(body["class_names"]) == 10
        assert abs(sum(body["probabilities"]) - 1) < 1e-4
        assert body["url"].endswith("/labels/stable" if "label" in choice else
                                    f"/versions/{console.first_version}" if "version" in choice
                                    else "_tiny")
    unknown = session.post(url, json={"model": console.model, "image_b64": image,
                                      "label": "nope"}, headers=headers, timeout=60)
    assert unknown.status_code == 502 and "nope" in unknown.json()["error"]
    no_csrf = session.post(url, json={"model": console.model, "image_b64": image}, timeout=60)
    assert no_csrf.status_code == 403


def test_stop_from_the_console_takes_the_model_out_of_serving(console: Console) -> None:
    from registry.api import open_registry

    holder = requests.Session()
    holder.get(f"{console.url}/models?token={TOKEN}", timeout=30)
    csrf = csrf_of(holder, f"{console.url}/models/{console.model}")
    done = holder.post(f"{console.url}/models/{console.model}/actions/stop", data={"csrf": csrf},
                       timeout=60, allow_redirects=False)
    assert done.status_code == 303, done.text[:300]
    registry = open_registry(console.metadata, console.serving_dir)
    assert not registry.summary(console.model).serving
    back = holder.post(f"{console.url}/models/{console.model}/actions/rollback",
                       data={"csrf": csrf}, timeout=60, allow_redirects=False)
    assert back.status_code == 303  # a rollback serves again (other tests expect it serving)
    assert registry.summary(console.model).serving
