"""``mlmodel monitor`` on what a real ``serving start --capture-rate 1.0`` captured: the tiny run's
deployed version served from the registry, TF Serving REST requests, the server's own
``PredictionLog`` files (serving/capture.py), read back by the monitor with the real answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from contracts import capture as layout
from serving.server import free_port
from tests.datagen import synthetic_images
from tests.registry.test_monitor import (  # noqa: F401
    REPO,
    SERVING_NAME,
    Deployed,
    _monitor,
    deployed,
)
from tests.server_process import wait_ready


def _predict(url: str, images: np.ndarray) -> None:
    for start in range(0, len(images), 8):  # 8 images a request, as a client batches them
        batch = (images[start:start + 8].astype(np.float32) / 255.0)[..., None]
        answer = requests.post(f"{url}/v1/models/{SERVING_NAME}/versions/1:predict",
                               json={"instances": batch.tolist()}, timeout=60)
        assert answer.status_code == 200, answer.text


def _finished_files(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if layout.is_capture_file(n)) \
        if folder.is_dir() else []


@pytest.mark.slow
def test_monitor_reads_what_the_real_server_captured(deployed: Deployed,  # noqa: F811
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    capture = tmp_path / "capture"
    port = free_port()
    log = tmp_path / "server.log"
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "start", "--source", "registry", "--metadata",
             deployed.metadata, "--serving-dir", deployed.serving_dir, "--port", str(port),
             "--grpc-port", "0", "--grace-s", "5", "--capture-dir", str(capture),
             "--capture-rate", "1.0", "--capture-rotate-seconds", "0.5"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, 180, log=log)
        labels = np.random.default_rng(9).integers(0, 10, 160)
        like_training = synthetic_images(labels.tolist(), seed=31)
        _predict(url, like_training)
        folder = capture / SERVING_NAME / "1"
        deadline = time.monotonic() + 60
        while not _finished_files(folder):  # the writer rotates its file every 0.5 s
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(1.0)  # one more rotation: every request of the batch is in a finished file
        code, report, err = _monitor(deployed, capture, capsys, "--no-record")
        assert report["requests"] == 160, err
        image_features = {"mean_intensity", "ink_fraction", "center_of_mass_x",
                          "center_of_mass_y", "bbox_width", "bbox_height"}
        assert not image_features & set(report["drifted"]), report["features"]
        _predict(url, 255 - like_training)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the server flushes its capture on the way out
            proc.wait(timeout=60)
    code, report, _ = _monitor(deployed, capture, capsys, "--no-record")
    assert report["requests"] == 320 and report["skipped_records"] == 0
    assert code == 3 and "mean_intensity" in report["drifted"]
