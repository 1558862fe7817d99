"""``mlmodel doctor``: debris of killed writes is found, removed with --repair, and nothing else."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.registry.conftest import Env
from tests.registry.test_cli import mlmodel


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def staging_name(pid: int) -> str:
    return f".tmp-{socket.gethostname().replace('-', '_')}-{pid}-0badc0de"


@pytest.fixture
def damaged(sqlite_env: Env) -> Env:
    """A deployed model, plus what killed writes leave, plus things doctor must not touch."""
    env = sqlite_env
    env.add_run("mnist")
    reg = env.registry()
    reg.deploy("mnist", user="root")
    reg.deploy("mnist", user="root")
    serving = Path(env.serving_dir)
    dead = dead_pid()
    for parent in (serving / "root_mnist", serving / ".registry" / "models" / "imported"):
        (parent / staging_name(dead) / "variables").mkdir(parents=True)
    (serving / ".deleting-root_old-1234abcd" / "1").mkdir(parents=True)
    (serving / "root_mnist" / "7").mkdir()  # a deploy killed between the rename and the record
    # Not the registry's, or still in progress: never touched.
    (serving / "someone_else" / "3").mkdir(parents=True)
    (serving / "root_mnist" / staging_name(os.getpid())).mkdir()
    return env


def kinds(rows: list[dict[str, str]]) -> list[tuple[str, str]]:
    return sorted((r["kind"], os.path.basename(r["path"])) for r in rows)


def test_doctor_lists_then_repairs_only_debris(capsys: pytest.CaptureFixture[str],
                                               damaged: Env) -> None:
    import shutil

    serving = Path(damaged.serving_dir)
    shutil.rmtree(serving / "root_mnist" / "1")  # a recorded version whose files are gone
    dead = [p.name for p in (serving / "root_mnist").iterdir()
            if p.name.startswith(".tmp-") and not p.name.endswith(f"-{os.getpid()}-0badc0de")]
    code, out, err = mlmodel(capsys, damaged, "doctor", "--output", "json")
    assert code == 1, err
    rows = json.loads(out)
    assert kinds(rows) == sorted([
        ("staging", dead[0]), ("staging", dead[0]),
        ("half-deleted", ".deleting-root_old-1234abcd"),
        ("unrecorded version", "7"), ("missing files", "1")])
    assert all(r["action"] == "remove with --repair" for r in rows if r["kind"] != "missing files")
    assert (serving / "root_mnist" / "7").is_dir()  # listing removes nothing

    code, out, err = mlmodel(capsys, damaged, "doctor", "--repair")
    assert code == 1  # the missing files are left to the user
    assert "removed" in out and "fix by hand" in out and "mlmodel deploy mnist" in out
    left = sorted(p.name for p in (serving / "root_mnist").iterdir())
    assert left == sorted(["2", staging_name(os.getpid())])  # live staging kept
    assert not (serving / ".deleting-root_old-1234abcd").exists()
    assert not any((serving / ".registry" / "models" / "imported").iterdir())
    assert (serving / "someone_else" / "3").is_dir()
    history = damaged.registry().history("mnist")
    assert [e.action for e in history] == ["deploy", "deploy"]  # doctor records nothing

    damaged.registry().rollback("mnist", version=2, user="root")
    shutil.copytree(serving / "root_mnist" / "2", serving / "root_mnist" / "1")
    code, out, err = mlmodel(capsys, damaged, "doctor")
    assert code == 0 and "nothing to fix" in err


def test_doctor_on_a_folder_without_a_registry_creates_nothing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    env = Env(str(tmp_path / "runs" / "metadata.sqlite"), str(tmp_path / "serving_model"),
              "", tmp_path)
    code, _, err = mlmodel(capsys, env, "doctor", "--repair")
    assert code == 0 and "nothing to fix" in err
    assert not (tmp_path / "runs" / "metadata.sqlite").exists()
