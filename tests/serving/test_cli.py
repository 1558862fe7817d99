"""`serving start` as a real process (SIGTERM drains requests) and `serving predict` against it."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from click.testing import CliRunner
from PIL import Image

from serving.cli import main
from serving.server import free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextlib.contextmanager
def server_process(root: Path, saved_model: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """``python -m serving start`` on a directory source with ``saved_model`` as mnist/1."""
    import shutil

    serving_dir = root / "serving_model"
    shutil.copytree(saved_model, serving_dir / "mnist" / "1")
    (serving_dir / "mnist" / ".2.partial").mkdir()  # dot-prefixed: never served
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    log = open(root / "server.log", "w+")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving", "start", "--source", "directory", "--serving-dir",
         str(serving_dir), "--port", str(port), "--grace-s", "20", "--max-body-mb", "64"],
        cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 200,
                   120, "the server to become ready")
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.seek(0)
        print(log.read()[-3000:])
        log.close()


@pytest.fixture(scope="module")
def process(tmp_path_factory: pytest.TempPathFactory, saved_model: Path) -> Iterator[tuple]:
    with server_process(tmp_path_factory.mktemp("cli"), saved_model) as running:
        yield running


def write_png_folder(root: Path, per_class: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for digit in range(3):
        for i in range(per_class):
            (root / str(digit)).mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, (28, 28), dtype=np.uint8)
            Image.fromarray(pixels).save(root / str(digit) / f"{i}.png")
    return root


def write_idx(root: Path, n: int = 5) -> Path:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    with gzip.open(root / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">4B3I", 0, 0, 8, 3, n, 28, 28) + images.tobytes())
    with gzip.open(root / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">4BI", 0, 0, 8, 1, n) + labels.tobytes())
    return root / "t10k-images-idx3-ubyte.gz"


def test_directory_source_serves_numeric_versions_only(process) -> None:
    _, url = process
    body = requests.get(f"{url}/v1/models/mnist", timeout=5).json()
    assert [s["version"] for s in body["model_version_status"]] == ["1"]


def test_predict_folder_and_idx_json(process, tmp_path: Path) -> None:
    _, url = process
    folder = write_png_folder(tmp_path / "testing")
    idx = write_idx(tmp_path / "idx")
    result = CliRunner().invoke(main, ["predict", "mnist", str(folder), str(idx), "--url", url,
                                       "--output", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["version"] == "1" and len(report["predictions"]) == 6 + 5
    first = report["predictions"][0]
    assert first["label"] == 0 and first["tag"] == "zero"
    assert len(first["prediction"]) == 10 and first["interpreted"] in (
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    assert first["probability"] == max(first["prediction"])
    right = sum(p["label"] == p["predicted"] for p in report["predictions"])
    assert report["labelled"] == 11 and report["accuracy"] == pytest.approx(right / 11)


def test_predict_reads_what_the_pipeline_reads(process, tmp_path: Path) -> None:
    """TFRecord and IRIS TSV files (read by datasources/, as --data and mlmodel predict read
    them), which serving predict's own reader used to refuse."""
    from tests import datagen

    _, url = process
    record = datagen.write_tfrecord(tmp_path / "rec" / "digits.tfrecord", 4)
    tsv = datagen.write_iris_tsv(tmp_path / "iris", n_per_class=1, dictionary=False)
    result = CliRunner().invoke(main, ["predict", "mnist", str(record), str(tsv / "train.tsv"),
                                       "--url", url, "--output", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    inputs = [p["input"] for p in report["predictions"]]
    assert sum("digits.tfrecord" in i for i in inputs) == 4
    assert sum("train.tsv" in i for i in inputs) == 10
    assert all(p["label"] is not None for p in report["predictions"])


def test_predict_table_and_errors(process, tmp_path: Path) -> None:
    _, url = process
    folder = write_png_folder(tmp_path / "testing", per_class=1)
    result = CliRunner().invoke(main, ["predict", "mnist", str(folder), "--url", url,
                                       "--version", "1"])
    assert result.exit_code == 0, result.output
    for column in ("label", "tag", "prediction", "probability", "interpreted", "accuracy"):
        assert column in result.output
    assert "0/0.png" in result.output and "1/0.png" in result.output  # label folder/file
    result = CliRunner().invoke(main, ["predict", "mnist", str(folder), "--url", url,
                                       "--version", "7"])
    assert result.exit_code == 1 and "Could not find version 7" in result.output
    assert "Traceback" not in result.output


def test_short_input_names() -> None:
    from serving.predict_client import short_input

    assert short_input("/data/testing/7/123.png") == "7/123.png"
    assert short_input("/data/idx/t10k-images-idx3-ubyte.gz[12]") == "t10k-images-idx3-ubyte.gz[12]"
    assert short_input("digit.png") == "digit.png"


def test_status_command_is_mounted() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "status" in result.output and "predict" in result.output


def test_sigterm_finishes_requests_in_flight(process) -> None:
    """SIGTERM arrives while the request body is still uploading: the server stops listening,
    reads the rest of the body, answers, and only then exits (aiohttp's own cleanup would drop
    the rest of the body; see serving/drain.py)."""
    proc, url = process
    body = json.dumps({"instances": [[[[0.5]] * 28] * 28] * 3000}).encode()
    half = len(body) // 2
    signalled = threading.Event()
    outcome: dict[str, object] = {}

    def chunks() -> Iterator[bytes]:
        yield body[:half]
        signalled.wait(30)
        time.sleep(0.3)  # the server is draining now
        yield body[half:]

    def slow_request() -> None:
        try:
            r = requests.post(f"{url}/v1/models/mnist:predict", data=chunks(), timeout=60)
            outcome["status"] = r.status_code
            outcome["rows"] = len(r.json().get("predictions", []))
            outcome["connection"] = r.headers.get("Connection", "").lower()
        except Exception as exc:  # noqa: BLE001
            outcome["error"] = repr(exc)

    thread = threading.Thread(target=slow_request)
    thread.start()

    def in_flight() -> bool:  # the /metrics request itself is one
        text = requests.get(f"{url}/metrics", timeout=2).text
        line = next(x for x in text.splitlines() if x.startswith("serving_requests_in_flight "))
        return float(line.split()[1]) >= 2

    try:
        wait_until(in_flight, 30, "the slow request to be in flight")
        proc.send_signal(signal.SIGTERM)
    finally:
        signalled.set()
    thread.join(60)
    assert outcome == {"status": 200, "rows": 3000, "connection": "close"}
    assert proc.wait(timeout=30) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/v2/health/live", timeout=2)


def test_second_interrupt_stops_without_waiting(tmp_path: Path, saved_model: Path) -> None:
    """Ctrl-C drains; Ctrl-C again exits at once, even with a request stuck mid-upload."""
    with server_process(tmp_path, saved_model) as (proc, url):
        release = threading.Event()

        def never_finishing_body() -> Iterator[bytes]:
            yield b'{"instances": [[[[0.5'
            release.wait(60)

        def stuck_request() -> None:
            with contextlib.suppress(requests.RequestException):
                requests.post(f"{url}/v1/models/mnist:predict", data=never_finishing_body(),
                              timeout=60)

        thread = threading.Thread(target=stuck_request, daemon=True)
        thread.start()
        try:
            wait_until(lambda: "serving_requests_in_flight 2.0" in
                       requests.get(f"{url}/metrics", timeout=2).text, 30,
                       "the stuck request to be in flight")
            proc.send_signal(signal.SIGINT)
            time.sleep(1.0)
            assert proc.poll() is None, "the first Ctrl-C should wait for the request (grace 20 s)"
            started = time.monotonic()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=15) == 0
            assert time.monotonic() - started < 10
        finally:
            release.set()
