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


KILLED_PUSH = """
import sys
from pipeline.components.pusher_executor import push_new_version
push_new_version(sys.argv[1], sys.argv[2])
"""


def test_a_killed_pushers_staging_is_found_and_repaired(capsys: pytest.CaptureFixture[str],
                                                        sqlite_env: Env, tmp_path: Path) -> None:
    """The Pusher publishes as deploy does (contracts.publish): what a killed one leaves is the
    same kind of staging directory, under the pipeline's serving name, and doctor removes it."""
    from pipeline.components.pusher_executor import PUSH_CRASH_ENV

    model = tmp_path / "trainer" / "Format-Serving"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"\x08\x01")
    base = Path(sqlite_env.serving_dir) / "mnist"
    proc = subprocess.run([sys.executable, "-c", KILLED_PUSH, str(model), str(base)],
                          env={**os.environ, PUSH_CRASH_ENV: "before_publish"},
                          cwd=Path(__file__).resolve().parents[2], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 97, proc.stderr[-2000:]
    left = [p for p in base.iterdir() if p.is_dir()]
    assert [p.name.startswith(".tmp-") for p in left] == [True]
    assert (left[0] / "saved_model.pb").is_file()  # the copy was whole; only the rename missed

    code, out, err = mlmodel(capsys, sqlite_env, "doctor", "--output", "json")
    assert code == 1, err
    assert [(r["kind"], r["path"], r["action"]) for r in json.loads(out)] == [
        ("staging", str(left[0]), "remove with --repair")]
    code, out, err = mlmodel(capsys, sqlite_env, "doctor", "--repair")
    assert code == 0, err
    assert not [p for p in base.iterdir() if p.is_dir()]
    code, _, _ = mlmodel(capsys, sqlite_env, "doctor")
    assert code == 0


def test_an_older_pushers_staging_is_found(capsys: pytest.CaptureFixture[str],
                                           sqlite_env: Env) -> None:
    legacy = Path(sqlite_env.serving_dir) / "mnist" / ".push-3-k2j4h5g6"
    (legacy / "variables").mkdir(parents=True)
    code, out, _ = mlmodel(capsys, sqlite_env, "doctor", "--output", "json")
    assert code == 1
    assert [(r["kind"], r["path"]) for r in json.loads(out)] == [("staging", str(legacy))]


def test_deploy_and_push_number_versions_alike(tmp_path: Path) -> None:
    """One numbering rule: one more than every directory and every recorded version."""
    from contracts import publish

    parent = tmp_path / "m"
    (parent / "2").mkdir(parents=True)
    source = tmp_path / "src"
    source.mkdir()
    (source / "f").write_text("x")
    assert publish.publish(publish.stage_copy(str(source), str(parent)), str(parent))[0] == 3
    version, path = publish.publish(publish.stage_copy(str(source), str(parent)), str(parent),
                                    taken={7})
    assert (version, os.path.basename(path)) == (8, "8")
    assert sorted(os.listdir(parent)) == ["2", "3", "8"]
