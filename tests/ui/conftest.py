"""The web console against a real tiny pipeline run: a `mlmodel ui` process, a `serving start`
process, and (for the browser tests) headless Chromium through selenium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from serving.server import free_port
from tests.server_process import wait_ready

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "ui-test-token"
XSS_NAME = "<script>alert(1)</script>"
XSS_PROPERTY = '<img src=x onerror="alert(2)">'


@dataclass
class Console:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    metadata: str
    serving_dir: str
    model: str
    server_url: str
    first_version: int = 1  # the version the fixture deployed (the copied run may hold others)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class ModelServer:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


def _env() -> dict[str, str]:
    # PYTHONFAULTHANDLER: a process that never comes up prints every thread's stack on SIGABRT
    return dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", USER="root",
                PYTHONFAULTHANDLER="1")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def add_hostile_pipeline(metadata: str, root: Path) -> None:
    """Another pipeline in the same MLMD, named and described with markup (names the registry
    itself refuses, but MLMD holds whatever a pipeline writes)."""
    from benchmarks.tfx_records import add_pipeline_run, connect, fake_model

    ids = add_pipeline_run(metadata, XSS_NAME, fake_model(root / "hostile"),
                           str(root / "hostile_pushed"), blessed=False)
    store = connect(metadata)
    [model] = store.get_artifacts_by_id([ids["model"]])
    model.custom_properties["note"].string_value = XSS_PROPERTY
    store.put_artifacts([model])


@pytest.fixture(scope="module")
def console_registry(tiny_pipeline_run, tmp_path_factory: pytest.TempPathFactory
                     ) -> tuple[str, str, str, int]:
    """A copy of the session's tiny run (never the run itself), deployed once, plus a hostile
    pipeline; returns (metadata, serving dir, model name, the deployed version). Other tests may
    have deployed into the session's run: the version is not always 1."""
    from registry.api import open_registry

    root = tmp_path_factory.mktemp("console")
    metadata, serving = str(root / "metadata.sqlite"), str(root / "serving_model")
    shutil.copy(tiny_pipeline_run.metadata_path, metadata)
    add_hostile_pipeline(metadata, root)
    reg = open_registry(metadata, serving)
    # The session's own run, not the model's latest candidate: tests that ran before (a worse
    # model, bad data) may have added unblessed runs to it; deploy takes the latest blessed push.
    run = tiny_pipeline_run.summary
    if not run.pushed_version:  # a failure, never a skip: every console test needs it
        pytest.fail(f"the session's tiny pipeline run pushed nothing (blessed: {run.blessed}, "
                    f"infra_blessed: {run.infra_blessed}), so the console has no model to "
                    f"deploy; its run output:\n{tiny_pipeline_run.output[-3000:]}")
    deployed = reg.deploy(tiny_pipeline_run.model_name, label="stable", user="root")
    return metadata, serving, tiny_pipeline_run.model_name, deployed.latest_version


@pytest.fixture(scope="module")
def model_server(console_registry: tuple[str, str, str, int],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    metadata, serving, _, _ = console_registry
    port = free_port()
    log = tmp_path_factory.mktemp("model_server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "start", "--source", "registry", "--metadata",
             metadata, "--serving-dir", serving, "--port", str(port), "--grpc-port", "0",
             "--poll-s", "0.1"], cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, log=log)
    yield ModelServer(url, proc, log)
    stop(proc)


def start_console(metadata: str, serving: str, model: str, pipeline_root: str, server_url: str,
                  log: Path, *extra: str, first_version: int = 1) -> Console:
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "registry", "ui", "--port", str(port), "--auth-token", TOKEN,
             "--metadata", metadata, "--serving-dir", serving, "--pipeline-root", pipeline_root,
             "--server-url", server_url, *extra],
            cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, log=log, path="/healthz")
    return Console(url, proc, log, metadata, serving, model, server_url, first_version)


@pytest.fixture(scope="module")
def console(console_registry: tuple[str, str, str, int], model_server: ModelServer,
            tiny_pipeline_run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    metadata, serving, model, version = console_registry
    log = tmp_path_factory.mktemp("console_log") / "ui.log"
    running = start_console(metadata, serving, model, tiny_pipeline_run.pipeline_root,
                            model_server.url, log, first_version=version)
    yield running
    stop(running.proc)
