"""Hot reload: deploys under load with 0 failed requests, broken versions, the real registry."""

from __future__ import annotations

import json
import tarfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import requests
from click.testing import CliRunner
from PIL import Image

from serving import cli as serving_cli
from serving.server import BackgroundServer, build_runtime

from .conftest import FakeSource, start_server

IMAGE = [[[0.5] for _ in range(28)] for _ in range(28)]
V2_BODY = {"inputs": [{"name": "images", "shape": [1, 28, 28, 1], "datatype": "FP32",
                       "data": [0.5] * 784}]}


def poll(predicate, timeout: float) -> float:  # noqa: ANN001
    """Seconds until ``predicate()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if predicate():
                return time.monotonic() - start
        except requests.RequestException:
            pass
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


def latest_version(url: str, name: str) -> str | None:
    r = requests.get(f"{url}/v1/models/{name}/metadata", timeout=5)
    return r.json()["model_spec"]["version"] if r.status_code == 200 else None


def test_deploy_under_load_has_no_failed_request(source: FakeSource) -> None:
    source.deploy("root_mnist", 1)
    srv = start_server(source)
    srv.runtime.manager.start()  # follow the source like `serving start` does
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        session = requests.Session()
        while not stop.is_set():
            r = session.post(f"{srv.url}/v2/models/root_mnist/infer", json=V2_BODY, timeout=30)
            with lock:
                if r.status_code == 200:
                    outcomes[r.json()["model_version"]] += 1
                else:
                    failures.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=client) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        poll(lambda: outcomes["1"] >= 20, 60)
        source.deploy("root_mnist", 2)  # v1 stops serving, v2 becomes current
        took = poll(lambda: outcomes["2"] >= 20, 60)
        assert took <= 10  # picked up at the next poll, plus a model load under load
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        srv.http.stop()
        srv.runtime.close()
    assert failures == []
    assert outcomes["1"] >= 20 and outcomes["2"] >= 20


def test_reload_label_move_and_rollback_within_2s(source: FakeSource) -> None:
    source.deploy("root_mnist", 1, labels=("stable",))
    srv = start_server(source)
    srv.runtime.manager.start()
    try:
        u = srv.url
        # the new version loads in the background; the deadline counts from the version being
        # loadable, so first wait for it to be AVAILABLE, then time label moves and rollback
        source.deploy("root_mnist", 2, keep_old=True)
        poll(lambda: latest_version(u, "root_mnist") == "2", 30)
        source.set("root_mnist", 1, labels=())
        source.set("root_mnist", 2, labels=("stable",))
        assert poll(lambda: requests.get(f"{u}/v1/models/root_mnist/labels/stable/metadata",
                                         timeout=5).json()["model_spec"]["version"] == "2", 2) < 2
        source.set("root_mnist", 2, current=False)
        source.set("root_mnist", 1, current=True)  # rollback
        assert poll(lambda: latest_version(u, "root_mnist") == "1", 2) < 2
        source.stop("root_mnist")
        assert poll(lambda: requests.post(f"{u}/v1/models/root_mnist:predict",
                                          json={"instances": [IMAGE]}, timeout=5).status_code
                    == 404, 2) < 2
        status = requests.get(f"{u}/v1/models/root_mnist", timeout=5).json()
        assert {s["state"] for s in status["model_version_status"]} == {"END"}
    finally:
        srv.http.stop()
        srv.runtime.close()


def test_broken_version_does_not_take_the_model_down(source: FakeSource) -> None:
    source.deploy("root_mnist", 1)
    srv = start_server(source)
    try:
        source.deploy("root_mnist", 2, broken=True)
        srv.manager.sync()
        u = srv.url
        r = requests.post(f"{u}/v1/models/root_mnist:predict", json={"instances": [IMAGE]},
                          timeout=10)
        assert r.status_code == 200
        assert latest_version(u, "root_mnist") == "1"
        states = {s["version"]: s for s in
                  requests.get(f"{u}/v1/models/root_mnist", timeout=5).json()[
                      "model_version_status"]}
        assert states["1"]["state"] == "AVAILABLE"
        assert states["2"]["state"] == "END"
        assert states["2"]["status"]["error_code"] == "FAILED_PRECONDITION"
        assert "could not load the SavedModel" in states["2"]["status"]["error_message"]
        r = requests.post(f"{u}/v1/models/root_mnist/versions/2:predict",
                          json={"instances": [IMAGE]}, timeout=10)
        assert r.status_code == 404 and "failed to load" in r.json()["error"]
        assert requests.get(f"{u}/v2/health/ready", timeout=5).status_code == 200
    finally:
        srv.http.stop()
        srv.runtime.close()


def test_follows_the_real_registry(tmp_path: Path, saved_model: Path) -> None:
    api = pytest.importorskip("registry.api")
    from serving.sources import registry_source

    archive = tmp_path / "model.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(saved_model, arcname=".")
    metadata, serving_dir = str(tmp_path / "m.sqlite"), str(tmp_path / "serving")
    reg = api.open_registry(metadata=metadata, serving_dir=serving_dir)
    reg.import_model("mnist_v1", str(archive))
    reg.deploy("mnist_v1", user="root")
    runtime = build_runtime(registry_source(metadata, serving_dir), poll_interval=0.2)
    runtime.manager.start()
    http = BackgroundServer(runtime).start()
    try:
        u = http.url
        poll(lambda: latest_version(u, "root_mnist_v1") == "1", 60)
        r = requests.post(f"{u}/v1/models/root_mnist_v1/versions/1:predict",
                          json={"signature_name": "serving_default", "instances": [IMAGE]},
                          timeout=10)
        assert r.status_code == 200 and len(r.json()["predictions"][0]) == 10
        # `serving predict` takes the registry's model name too, and says what it resolved to
        png = tmp_path / "images" / "7" / "a.png"
        png.parent.mkdir(parents=True)
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(png)
        result = CliRunner().invoke(serving_cli.main, [
            "predict", "mnist_v1", str(png.parent.parent), "--url", u, "--metadata", metadata,
            "--output", "json"])
        assert result.exit_code == 0, result.output
        assert "model mnist_v1 is served as root_mnist_v1" in result.stderr
        assert json.loads(result.stdout)["predictions"][0]["label"] == 7
        reg.deploy("mnist_v1", label="canary", user="root")
        poll(lambda: latest_version(u, "root_mnist_v1") == "2", 30)
        assert requests.get(f"{u}/v1/models/root_mnist_v1/labels/canary/metadata",
                            timeout=5).json()["model_spec"]["version"] == "2"
        # Rolling back reloads version 1 (only deployed versions stay loaded): a SavedModel load
        # and its warm-up, which took just over 2 s on a loaded 2-core machine; 5 s bounds it.
        reg.rollback("mnist_v1", user="root")
        assert poll(lambda: latest_version(u, "root_mnist_v1") == "1", 5) < 5
        reg.stop("mnist_v1", user="root")
        assert poll(lambda: latest_version(u, "root_mnist_v1") is None, 5) < 5
    finally:
        http.stop()
        runtime.close()
