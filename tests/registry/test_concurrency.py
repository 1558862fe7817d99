"""8 deploys at once give 8 consecutive versions; readers never fail; crashes leave nothing half-done."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from registry.files import CRASH_ENV
from tests.registry.conftest import REPO, Env

GATED = ("import os, sys; from registry.cli import main; import registry.api; "
         "os.read(0, 1); main(sys.argv[1:])")


def start_gated(env: Env, args: list[str], extra: dict[str, str] | None = None) -> subprocess.Popen:
    """A ``mlmodel`` process that has imported everything and waits for one byte on stdin."""
    environ = env.environ() | (extra or {})
    return subprocess.Popen([sys.executable, "-c", GATED, *args], cwd=REPO, env=environ,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_eight_deploys_at_once_get_eight_consecutive_versions(any_env: Env) -> None:
    env = any_env
    env.add_run("mnist")
    reg = env.registry()
    errors: list[BaseException] = []
    seen: list[int] = []
    done = threading.Event()

    def read_while_writing() -> None:
        reader = env.registry()
        while not done.is_set():
            try:
                seen.append(len(reader.serving_snapshot()))
                reader.list_models()
            except BaseException as exc:  # any failure of a reader is a test failure
                errors.append(exc)
                return

    procs = [start_gated(env, ["deploy", "mnist", "--user=root", "--output=json"])
             for _ in range(8)]
    thread = threading.Thread(target=read_while_writing)
    thread.start()
    for proc in procs:  # release all eight together
        assert proc.stdin is not None
        proc.stdin.write("x")
        proc.stdin.flush()
    results = [proc.communicate(timeout=300) for proc in procs]
    done.set()
    thread.join()
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    versions = sorted(json.loads(out)[0]["latest_version"] for out, _ in results)
    assert versions == list(range(1, 9))
    assert not errors, errors
    assert seen == sorted(seen)  # readers saw versions only appear, never vanish
    snapshot = reg.serving_snapshot()
    assert sorted(v.version for v in snapshot) == list(range(1, 9))
    assert [v.version for v in snapshot if v.current] == [8]
    deploys = [h for h in reg.history("mnist") if h.action == "deploy"]
    assert sorted(h.version for h in deploys) == list(range(1, 9))
    parent = os.path.join(env.serving_dir, "root_mnist")
    assert sorted(os.listdir(parent)) == [str(v) for v in range(1, 9)]


@pytest.mark.parametrize("step", ["after_copy", "before_rename", "after_rename", "after_record"])
def test_killed_deploy_leaves_no_partial_version_or_dangling_record(sqlite_env: Env,
                                                                    step: str) -> None:
    env = sqlite_env
    env.add_run("mnist")
    first = env.run("deploy", "mnist")
    assert first.returncode == 0, first.stderr
    proc = start_gated(env, ["deploy", "mnist"], {CRASH_ENV: f"{step}:pause"})
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("x")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == f"PAUSED {step}"
    proc.kill()  # SIGKILL at that exact step
    proc.wait(timeout=30)
    proc.stdin.close()
    proc.stdout.close()
    proc.stderr.close()  # type: ignore[union-attr]

    reg = env.registry()
    parent = os.path.join(env.serving_dir, "root_mnist")
    recorded = {v.version for v in reg.serving_snapshot()}
    committed = step == "after_record"
    assert recorded == ({1, 2} if committed else {1})
    for version in recorded:  # every record has its whole directory
        assert os.path.isfile(os.path.join(parent, str(version), "saved_model.pb"))
    visible_numbered = {int(n) for n in os.listdir(parent) if n.isdigit()}
    # Only an un-recorded rename can leave an extra numbered dir; it is never in the snapshot.
    assert visible_numbered - recorded <= ({2} if step == "after_rename" else set())

    # The next deploy reconciles: stale staging and orphan dirs are gone, numbering continues.
    after = env.run("deploy", "mnist", "--output", "json")
    assert after.returncode == 0, after.stderr
    expected = 3 if committed else 2
    assert f'"latest_version": {expected}' in after.stdout
    assert sorted(os.listdir(parent)) == [str(v) for v in range(1, expected + 1)]
    assert sorted(v.version for v in reg.serving_snapshot()) == list(range(1, expected + 1))
