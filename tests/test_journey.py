"""The README's journey, command by command, as a user types it (after step 1, the training).

The commands are read from the README's journey block itself, so the test and the README cannot
drift apart. Each runs as its own process through the same entry point as ``.venv/bin/<tool>``,
against the session's tiny pipeline run (step 1, ``make run``, trains the embedded digits: CI
runs that command itself, see ``.ci/run``). What differs from a user's machine is substituted
and nothing else: the model name (``mnist`` -> the tiny run's), the data folder, the ports, the
output path.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from serving.server import free_port
from tests.conftest import TinyRun
from tests.server_process import wait_ready

REPO = Path(__file__).resolve().parents[1]
ENTRY_POINTS = {"mlmodel": ["-m", "registry"], "serving": ["-m", "serving"],
                "python": [], "mnist-pipeline": ["-m", "pipeline.local_runner"]}


def journey() -> list[str]:
    """The commands of the README's journey block, comments removed, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## The journey"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the README's journey section has no bash block"
    commands = []
    for line in block.group(1).splitlines():
        command = line.split("  #")[0].strip()
        if command:
            commands.append(command)
    return commands


@pytest.fixture(scope="module")
def user_dir(tiny_pipeline_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's working folder: its own copy of the run's registry and of its serving dir (other
    tests may have deployed from the session's run: records and files must agree)."""
    home = tmp_path_factory.mktemp("journey")
    shutil.copy(tiny_pipeline_run.metadata_path, home / "metadata.sqlite")
    if Path(tiny_pipeline_run.serving_dir).is_dir():
        shutil.copytree(tiny_pipeline_run.serving_dir, home / "serving_model")
    return home


def _argv(command: str, run: TinyRun, home: Path, port: int, ui_port: int = 0) -> list[str]:
    words = shlex.split(command.rstrip("&").strip())
    tool = Path(words[0]).name
    assert tool in ENTRY_POINTS, f"the journey uses {tool!r}; teach tests/test_journey.py to run it"
    args = []
    for word in words[1:]:
        if word == "mnist":
            word = run.model_name
        elif word == "data/digits/3":  # the embedded digits `make run` exports; here the tiny set
            word = str(Path(run.data_path) / "testing" / "3")
        elif word == "data/digits":
            word = run.data_path
        args.append(word)
    if words[1:3] == ["start"] or args[:1] == ["start"]:
        args += ["--port", str(port)]
    if args[:1] == ["ui"]:  # the web console: its own port, the run's pipeline root
        args += ["--port", str(ui_port), "--pipeline-root", run.pipeline_root]
    return [sys.executable, *ENTRY_POINTS[tool], *args]


@pytest.fixture(scope="module")
def environment(user_dir: Path) -> Iterator[dict[str, str]]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", USER="root",
               MNIST_TFX_METADATA=str(user_dir / "metadata.sqlite"),
               MNIST_TFX_SERVING_DIR=str(user_dir / "serving_model"),
               MNIST_TFX_SERVER_URL=f"http://127.0.0.1:{port}", JOURNEY_PORT=str(port))
    yield env


def test_the_readme_journey_works_as_written(tiny_pipeline_run: TinyRun, user_dir: Path,
                                             environment: dict[str, str]) -> None:
    commands = journey()
    assert commands[0] == "make run", commands  # step 1: run by .ci/run itself
    port, ui_port = int(environment["JOURNEY_PORT"]), free_port()
    background: list[subprocess.Popen[bytes]] = []
    outputs: dict[str, str] = {}
    try:
        for command in commands[1:]:
            argv = _argv(command, tiny_pipeline_run, user_dir, port, ui_port)
            if command.endswith("&"):
                console = "ui" in argv
                log = open(user_dir / ("ui.log" if console else "server.log"),  # noqa: SIM115
                           "wb")  # (closed with the process, below)
                background.append(subprocess.Popen(argv, cwd=user_dir, env=environment,
                                                   stdout=log, stderr=subprocess.STDOUT))
                wait_ready(f"http://127.0.0.1:{ui_port if console else port}", background[-1],
                           log=Path(log.name), path="/healthz" if console else "/v2/health/ready")
                if console:  # what a user sees first: the models table with the model serving
                    page = requests.get(f"http://127.0.0.1:{ui_port}/models", timeout=30).text
                    outputs[command] = page
                    assert f">{tiny_pipeline_run.model_name}</a>" in page and ">serving<" in page
                continue
            done = subprocess.run(argv, cwd=user_dir, env=environment, capture_output=True,
                                  text=True, timeout=300)
            assert done.returncode == 0, f"`{command}` failed:\n{done.stdout}\n{done.stderr}"
            outputs[command] = done.stdout
    finally:
        for proc in background:
            proc.terminate()
            proc.wait(timeout=60)
    name = tiny_pipeline_run.model_name
    by_verb = {f"{Path(c.split()[0]).name} {c.split()[1]}": out for c, out in outputs.items()}
    assert name in outputs[".venv/bin/mlmodel list"]
    deployed = [p for p in (user_dir / "serving_model").iterdir() if p.name.endswith(f"_{name}")]
    assert len(deployed) == 1 and deployed[0].name in by_verb["mlmodel deploy"]
    predicted = by_verb["serving predict"]
    assert "interpreted" in predicted and predicted.count(".png") >= 1
    assert "stable" in by_verb["serving status"] and "AVAILABLE" in by_verb["serving status"]
    assert (user_dir / "report.html").stat().st_size > 10_000
    assert "accuracy" in by_verb["mlmodel eval"] and "losses" in by_verb["mlmodel eval"]
    assert "interpreted" in by_verb["mlmodel predict"] and "three" in by_verb["mlmodel predict"]
    assert any((version / "saved_model.pb").is_file() for version in deployed[0].iterdir())
