"""The three runners: same flags, same graph; errors are one line with the right exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TinyRun

ROOT = Path(__file__).resolve().parents[1]
SHARED_FLAGS = ["--data", "--dataset", "--pipeline-root", "--metadata-path", "--serving-dir",
                "--model-name", "--epochs", "--warm-start", "--deploy", "--verbose"]


def _run(*args: str, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("runner", ["local_runner", "beam_runner", "kubeflow_runner"])
def test_help_explains_every_shared_flag(runner: str) -> None:
    result = _run("-m", f"pipeline.{runner}", "--help")
    assert result.returncode == 0, result.stderr
    for flag in SHARED_FLAGS:
        assert flag in result.stdout, (runner, flag)
    assert "Examples:" in result.stdout


def test_bad_flag_value_is_a_usage_error(tmp_path: Path) -> None:
    result = _run("-m", "pipeline.local_runner", "--eval-percent", "0", "--data", str(tmp_path))
    assert result.returncode == 2
    assert "eval-percent" in result.stderr and "Traceback" not in result.stderr


def test_empty_data_folder_is_named_in_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run("-m", "pipeline.local_runner", "--data", str(empty), cwd=tmp_path)
    assert result.returncode == 2
    assert str(empty) in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_kubeflow_runner_compiles_the_graph(tiny_pipeline_run: TinyRun, tmp_path: Path) -> None:
    out = tmp_path / "spec" / "mnist.json"
    result = _run("-m", "pipeline.kubeflow_runner", "--data", tiny_pipeline_run.data_path,
                  "--pipeline-root", str(tmp_path / "root"), "--output", str(out),
                  "--image", "example.com/mnist-tfx:1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    spec = json.loads(out.read_text())
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"] if "pipelineSpec" in spec else \
        spec["root"]["dag"]["tasks"]
    for name in ("ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform",
                 "Trainer", "Evaluator", "Pusher"):
        assert name in tasks, name
    assert "example.com/mnist-tfx:1" in out.read_text()


@pytest.mark.slow
def test_beam_runner_runs_the_same_graph(tiny_pipeline_run: TinyRun) -> None:
    """BeamDagRunner on the same config: the same components, cached from the local runs."""
    import io

    from pipeline.run import IN_MEMORY_BEAM, run_pipeline

    out = io.StringIO()
    summary = run_pipeline(tiny_pipeline_run.config(), orchestrator="beam",
                           beam_args=IN_MEMORY_BEAM, out=out)
    assert summary.succeeded, summary.states
    assert {"ExampleGen", "Transform", "Trainer", "Evaluator", "Pusher"} <= set(summary.states)
    assert summary.states["ExampleGen"] == "CACHED"
    assert "Pusher" in out.getvalue()
