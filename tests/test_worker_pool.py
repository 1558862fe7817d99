"""The whole graph with Beam workers in another process that never sees this checkout: Beam's
PortableRunner (its in-process job service), ``--environment_type=EXTERNAL`` pointing at
``worker_pool_main`` started outside the checkout in an environment without this project, and
our code shipped by ``--setup_file`` (issue 11)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.beam_worker_pool import REPO, running_worker_pool
from tests.conftest import TinyRun

pytestmark = pytest.mark.slow


def test_the_graph_runs_on_workers_that_get_our_code_only_by_staging(
        tiny_pipeline_run: TinyRun, tmp_path: Path) -> None:
    with running_worker_pool(tmp_path) as (endpoint, log, python):
        alone = subprocess.run([str(python), "-c", "import apache_beam, tfx, pipeline"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert alone.returncode == 1 and "No module named 'pipeline'" in alone.stderr
        run = subprocess.run(
            [sys.executable, "-m", "pipeline.beam_runner", "--data", tiny_pipeline_run.data_path,
             "--model-name", "pooled", "--pipeline-root", str(tmp_path / "root"),
             "--metadata", str(tmp_path / "metadata.sqlite"), "--serving-dir",
             str(tmp_path / "serving"), "--log-dir", str(tmp_path / "logs"), "--epochs", "3",
             "--accuracy-threshold", "0.0", "--",
             "--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=EXTERNAL",
             f"--environment_config={endpoint}", f"--setup_file={REPO / 'setup.py'}"],
            cwd=REPO, capture_output=True, text=True, timeout=900)
        pool = log.read_text(errors="replace")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "blessed:       yes" in run.stdout and "pushed:        version 1" in run.stdout
    for component in ("ExampleGen", "StatisticsGen", "Transform", "Evaluator"):
        assert f"{component}" in run.stdout
    # The workers booted from what the job staged: the sdist that --setup_file built.
    assert "staged workflow.tar.gz" in pool and "installed into" in pool, pool[-3000:]
    installed = list((tmp_path / "worker-cache").glob("*/datasources/layouts.py"))
    assert installed, "the staged package should hold the readers the workers ran"
