"""``mlmodel monitor``: captured requests against the training examples of the version's real
pipeline run (the session's ``tiny_pipeline_run``, its MLMD copied so deploys stay here).

Captured files are written as ``contracts/capture.py`` says (``capture_files.write_capture``);
the images are the tiny run's kind (``tests.datagen.synthetic_images``), changed per case.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from contracts.examples import DIGIT_CLASS_NAMES
from tests.conftest import TinyRun
from tests.datagen import synthetic_images
from tests.registry.capture_files import FORMS, confident, write_capture

REPO = Path(__file__).resolve().parents[2]
SERVING_NAME = "root_tiny"


@dataclass
class Deployed:
    metadata: str
    serving_dir: str
    run: TinyRun

    def args(self) -> list[str]:
        return ["--metadata", self.metadata, "--serving-dir", self.serving_dir]


@pytest.fixture(scope="module")
def deployed(tiny_pipeline_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    """The tiny run's registry, copied, with its model deployed as version 1 (root_tiny)."""
    from registry.api import open_registry

    root = tmp_path_factory.mktemp("monitor")
    metadata = str(root / "metadata.sqlite")
    shutil.copy(tiny_pipeline_run.metadata_path, metadata)
    serving_dir = str(root / "serving_model")
    result = open_registry(metadata, serving_dir).deploy("tiny", user="root")
    assert (result.latest_version, result.serving_name) == (1, SERVING_NAME)
    return Deployed(metadata, serving_dir, tiny_pipeline_run)


def _labels(n: int, seed: int = 1, only: int | None = None) -> np.ndarray:
    if only is not None:
        return np.full(n, only)
    return np.random.default_rng(seed).integers(0, 10, n)


def _capture(capture_dir: Path, images: np.ndarray, labels: np.ndarray, **kwargs: object) -> str:
    return write_capture(str(capture_dir), SERVING_NAME, 1, images, confident(labels),
                         class_names=DIGIT_CLASS_NAMES, **kwargs)  # type: ignore[arg-type]


def _monitor(deployed: Deployed, capture_dir: Path, capsys: pytest.CaptureFixture[str],
             *extra: str) -> tuple[int, dict, str]:
    """``mlmodel monitor tiny --output json`` in-process: (exit code, report, stderr)."""
    from registry.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["monitor", "tiny", "--capture-dir", str(capture_dir), "--output", "json",
              *deployed.args(), *extra])
    out = capsys.readouterr()
    code = int(exited.value.code or 0)
    return code, (json.loads(out.out) if out.out.strip() else {}), out.err


def _drift(report: dict) -> dict[str, float]:
    return {f["feature"]: f["divergence"] for f in report["features"] if f["drifted"]}


def test_images_like_training_do_not_drift(deployed: Deployed, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    labels = _labels(300)
    _capture(tmp_path, synthetic_images(labels.tolist(), seed=11), labels, per_request=3)
    code, report, err = _monitor(deployed, tmp_path, capsys)
    assert code == 0, (report.get("features"), err)
    assert report["drifted"] == [] and report["requests"] == 300
    training = report["training"]
    assert training["source"] == "mlmd" and training["examples"] == 160  # the run's train split
    assert "ExampleGen" in training["examples_uri"]
    assert report["report_artifact_id"] > 0


def test_inverted_images_drift_on_intensity_and_exit_3(deployed: Deployed, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    labels = _labels(200)
    _capture(tmp_path, 255 - synthetic_images(labels.tolist(), seed=12), labels)
    code, report, _ = _monitor(deployed, tmp_path, capsys)
    assert code == 3 and report["exit_code"] == 3
    row = next(f for f in report["features"] if f["feature"] == "mean_intensity")
    assert row["drifted"] and row["comparator"] == "jensen_shannon_divergence"
    assert row["divergence"] > row["threshold"] == 0.3
    assert row["served_mean"] > 0.8 > 0.2 > row["training_mean"]
    assert "predicted_class" not in report["drifted"]  # the model still answers the same mix


@pytest.mark.parametrize("change, features", [
    ("shifted", {"center_of_mass_x"}),
    ("rotated", {"center_of_mass_x", "center_of_mass_y", "bbox_width", "bbox_height"}),
])
def test_moved_images_drift_on_centre_or_box(deployed: Deployed, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str], change: str,
                                             features: set[str]) -> None:
    labels = _labels(200, seed=3)
    images = synthetic_images(labels.tolist(), seed=13)
    images = (np.roll(images, 6, axis=2) if change == "shifted"
              else np.rot90(images, 1, axes=(1, 2)).copy())
    _capture(tmp_path, images, labels)
    code, report, _ = _monitor(deployed, tmp_path, capsys)
    assert code == 3
    assert set(_drift(report)) & features, report["features"]
    assert "mean_intensity" not in report["drifted"]


def test_one_class_only_drifts_on_the_class_mix(deployed: Deployed, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    labels = _labels(200, only=3)
    _capture(tmp_path, synthetic_images(labels.tolist(), seed=14), labels)
    code, report, _ = _monitor(deployed, tmp_path, capsys)
    assert code == 3
    mix = _drift(report)
    assert mix["predicted_class"] == pytest.approx(0.9, abs=0.01)  # 100% "three" vs 10%
    three = next(c for c in report["class_mix"] if c["class"] == "three")
    assert three["served"] == 1.0 and three["training"] == pytest.approx(0.1)


def test_thresholds_are_settable_and_checked(deployed: Deployed, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    labels = _labels(100)
    _capture(tmp_path, 255 - synthetic_images(labels.tolist(), seed=15), labels)
    loose = [a for name in ("mean_intensity", "ink_fraction", "center_of_mass_x",
                            "center_of_mass_y", "bbox_width", "bbox_height")
             for a in ("--threshold", f"{name}=1")]
    code, report, _ = _monitor(deployed, tmp_path, capsys, *loose, "--no-record")
    assert code == 0 and report["thresholds"]["mean_intensity"] == 1.0
    assert "report_artifact_id" not in report
    code, _, err = _monitor(deployed, tmp_path, capsys, "--threshold", "colour=0.1")
    assert code == 2 and "unknown feature 'colour'" in err


def test_low_confidence_share_is_reported_and_flagged(deployed: Deployed, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    labels = _labels(100, seed=4)
    unsure = confident(labels, confidence=0.3)
    write_capture(str(tmp_path), SERVING_NAME, 1, synthetic_images(labels.tolist(), seed=16),
                  unsure, class_names=DIGIT_CLASS_NAMES)
    code, report, _ = _monitor(deployed, tmp_path, capsys)
    assert report["low_confidence_share"] == 1.0 and "low_confidence_share" in report["drifted"]
    assert code == 3
    assert len(report["lowest_confidence"]) == 24
    assert report["lowest_confidence"][0]["confidence"] == pytest.approx(0.3)


def test_every_request_form_is_read(deployed: Deployed, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """predict with images / image_bytes / examples inputs, and classify, as the server logs."""
    from registry.monitor_capture import capture_files, read_captured

    labels = _labels(40, seed=5)
    images = synthetic_images(labels.tolist(), seed=17)
    for seq, form in enumerate(FORMS):
        _capture(tmp_path, images, labels, form=form, per_request=4, seq=seq)
    files = capture_files(str(tmp_path), SERVING_NAME, [1])
    (Path(files[0]).parent / "capture-x.tfrecord.tmp").write_bytes(b"half written")
    assert capture_files(str(tmp_path), SERVING_NAME, [1]) == files  # partial files never read
    captured = read_captured(files, DIGIT_CLASS_NAMES)
    assert len(captured) == 4 * 40 and captured.skipped == 0
    for part in range(4):
        got = captured.pixels[part * 40:(part + 1) * 40]
        np.testing.assert_array_equal(got, images)
        np.testing.assert_array_equal(
            np.argmax(captured.probabilities[part * 40:(part + 1) * 40], axis=1), labels)


def test_since_leaves_out_older_requests(deployed: Deployed, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    labels = _labels(50, seed=6)
    images = synthetic_images(labels.tolist(), seed=18)
    _capture(tmp_path, 255 - images, labels, at=time.time() - 3 * 86400, seq=1)
    _capture(tmp_path, images, labels, seq=2)
    code, report, _ = _monitor(deployed, tmp_path, capsys, "--since", "24h")
    assert code == 0 and report["requests"] == 50
    code, report, _ = _monitor(deployed, tmp_path, capsys, "--since", "")
    assert code == 3 and report["requests"] == 100


def test_nothing_captured_is_an_input_error(deployed: Deployed, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _monitor(deployed, tmp_path, capsys)
    assert code == 2 and "no captured requests for version 1 of 'tiny'" in err
    assert "--capture-rate" in err


def test_report_is_in_mlmd_history_and_summary(deployed: Deployed, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from registry.api import open_registry
    from registry.monitor_store import latest_reports, report_by_id

    labels = _labels(60, seed=7)
    _capture(tmp_path, 255 - synthetic_images(labels.tolist(), seed=19), labels)
    code, report, _ = _monitor(deployed, tmp_path, capsys)
    reg = open_registry(deployed.metadata, deployed.serving_dir)
    newest = latest_reports(reg, "tiny", limit=1, full=True)[0]
    assert newest["report_artifact_id"] == report["report_artifact_id"]
    assert newest["drifted"] == report["drifted"] and newest["version"] == 1
    assert newest["report"]["features"] == report["features"]
    assert report_by_id(reg, "tiny", report["report_artifact_id"])["requests"] == 60
    assert report_by_id(reg, "other", report["report_artifact_id"]) is None
    history = reg.history("tiny")
    assert history[-1].action == "monitor" and "mean_intensity" in history[-1].detail
    from registry.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["summary", "tiny", "monitoring", *deployed.args()])
    out = capsys.readouterr().out
    assert exited.value.code == 0 and f"report {report['report_artifact_id']}" in out


def test_exit_code_of_the_real_command(deployed: Deployed, tmp_path: Path) -> None:
    """What cron sees: a process that exits 3 on drift and prints the table."""
    labels = _labels(60, seed=8)
    _capture(tmp_path, 255 - synthetic_images(labels.tolist(), seed=20), labels)
    done = subprocess.run([sys.executable, "-m", "registry", "monitor", "tiny", "--capture-dir",
                           str(tmp_path), "--no-record", *deployed.args()], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr
    assert "mean_intensity" in done.stdout and "DRIFT" in done.stdout
    assert "DRIFT: mean_intensity" in done.stderr


def test_label_version_and_baseline_choose_what_is_compared(deployed: Deployed, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from registry.api import open_registry

    open_registry(deployed.metadata, deployed.serving_dir).label("tiny", "stable", 1, user="root")
    labels = _labels(60, seed=9)
    _capture(tmp_path, synthetic_images(labels.tolist(), seed=22), labels)
    code, report, err = _monitor(deployed, tmp_path, capsys, "--label", "stable", "--no-record")
    assert code in (0, 3) and report["version"] == 1 and report["requests"] == 60
    assert "only 60 requests" in err  # a small window is noisy, and the command says so
    code, _, err = _monitor(deployed, tmp_path, capsys, "--version", "7")
    assert code == 2 and "no version 7" in err
    code, _, err = _monitor(deployed, tmp_path, capsys, "--version", "1", "--label", "stable")
    assert code == 2 and "not both" in err
    # --baseline: DATA's train split instead of the run's examples (here the run's own PNGs)
    code, report, _ = _monitor(deployed, tmp_path, capsys, "--baseline",
                               deployed.run.data_path, "--no-record")
    assert code in (0, 3) and report["training"]["source"] == "baseline"
    assert report["training"]["examples"] == 160 and "image_folder" in report["training"]["layout"]


def test_export_captured_command(deployed: Deployed, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    from registry.cli import main

    labels = _labels(20, seed=10)
    probabilities = confident(labels, confidence=0.8)
    probabilities[:3] = confident(labels[:3], confidence=0.3)
    write_capture(str(tmp_path / "capture"), SERVING_NAME, 1,
                  synthetic_images(labels.tolist(), seed=23), probabilities,
                  class_names=DIGIT_CLASS_NAMES)
    out = tmp_path / "relabel"
    with pytest.raises(SystemExit) as exited:
        main(["export-captured", "tiny", "--out", str(out), "--capture-dir",
              str(tmp_path / "capture"), "--low-confidence", "0.5", "--output", "json",
              *deployed.args()])
    result = json.loads(capsys.readouterr().out)
    assert exited.value.code == 0 and (result["captured"], result["written"]) == (20, 3)
    names = sorted(p.name for p in (out / "unlabelled").iterdir())
    assert len(names) == 3 and all(n.endswith("-0.300.png") for n in names)  # the unsure ones
    from datasources.readers import read_image

    first = read_image(out / "unlabelled" / names[0])
    assert first.shape == (28, 28) and first.dtype == np.uint8
    with pytest.raises(SystemExit) as exited:
        main(["export-captured", "tiny", "--out", str(out), "--capture-dir",
              str(tmp_path / "nothing"), *deployed.args()])
    assert exited.value.code == 2 and "nothing to export" in capsys.readouterr().err
