"""Every mlmodel command, in the key=value and --key forms, as tables and as --output json."""

from __future__ import annotations

import json
import os

import pytest

from registry.cli import main
from tests.registry.conftest import Env


def mlmodel(capsys: pytest.CaptureFixture[str], env: Env, *args: str) -> tuple[int, str, str]:
    argv = ["--metadata", env.metadata, "--serving-dir", env.serving_dir, "--user", "root", *args]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def as_json(capsys: pytest.CaptureFixture[str], env: Env, *args: str) -> object:
    code, out, err = mlmodel(capsys, env, *args, "--output", "json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def env(sqlite_env: Env, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.setenv("MNIST_TFX_SERVER_URL", "http://127.0.0.1:9")  # nothing listens there
    sqlite_env.add_run("mnist")
    return sqlite_env


def test_list_shows_pipeline_model_with_seed_columns(capsys, env: Env) -> None:
    code, out, err = mlmodel(capsys, env, "list")
    assert code == 0, err
    header = out.splitlines()[1]
    for column in ["id", "user", "name", "type", "category", "algorithm", "serving", "create",
                   "modified"]:
        assert column in header
    assert "mnist" in out and "off" in out
    rows = as_json(capsys, env, "LIST")
    assert [r["name"] for r in rows] == ["mnist"]
    assert rows[0]["serving"] == "off" and rows[0]["type"] == "tf"


def test_deploy_both_forms_counts_versions_and_prints_seed_columns(capsys, env: Env) -> None:
    code, out, _ = mlmodel(capsys, env, "deploy", "mnist", "label='unstable'")
    assert code == 0
    assert "result" in out and "latest_version" in out and "root_mnist" in out
    result = as_json(capsys, env, "DEPLOY", "mnist", "--label", "stable")
    assert result == [{"result": "on", "latest_version": 2, "serving_name": "root_mnist"}]
    assert sorted(os.listdir(os.path.join(env.serving_dir, "root_mnist"))) == ["1", "2"]
    assert os.path.isfile(os.path.join(env.serving_dir, "root_mnist", "2", "saved_model.pb"))
    snapshot = {v.version: v for v in env.registry().serving_snapshot()}
    assert snapshot[1].labels == ("unstable",) and snapshot[2].labels == ("stable",)
    assert snapshot[2].current and not snapshot[1].current
    rows = as_json(capsys, env, "list")
    assert rows[0]["serving"] == "on"


def test_deploy_user_sets_serving_name(capsys, env: Env) -> None:
    result = as_json(capsys, env, "deploy", "mnist", "user=alice")
    assert result[0]["serving_name"] == "alice_mnist"


def test_summary_rows_and_fields(capsys, env: Env) -> None:
    code, out, _ = mlmodel(capsys, env, "summary", "mnist")
    assert code == 0
    for field in ["filename", "format", "parameter", "evaluation", "train_cnt", "elapsed",
                  "dictionary", "cdate", "mdate", "serving_name", "state", "lineage"]:
        assert field in out
    data = as_json(capsys, env, "summary", "name=mnist")
    assert data["parameter"] == {"epochs": 1, "batch_size": 32}
    assert data["evaluation"]["overall"]["sparse_categorical_accuracy"] == 0.9
    assert set(data["evaluation"]["per_label"]) == {str(i) for i in range(10)}
    assert data["train_cnt"] == 160 and data["elapsed"] == 12.5
    assert data["state"] == "DONE" and data["serving"] == "off"
    assert data["lineage"]["blessed"] is True and data["lineage"]["pipeline_run"]
    assert data["lineage"]["trainer_execution_id"] > 0
    assert len(data["cdate"]) == 14
    picked = as_json(capsys, env, "summary", "mnist", "id,name,state")
    assert list(picked) == ["id", "name", "state"]


def test_stop_rollback_label_history(capsys, env: Env) -> None:
    for _ in range(3):
        assert mlmodel(capsys, env, "deploy", "mnist")[0] == 0
    assert as_json(capsys, env, "rollback", "mnist") == [{"result": "ok", "current_version": 2}]
    assert as_json(capsys, env, "rollback", "mnist", "--version", "1")[0]["current_version"] == 1
    assert as_json(capsys, env, "rollback", "mnist", "version=3")[0]["current_version"] == 3
    assert as_json(capsys, env, "label", "mnist", "stable", "version=2")[0]["version"] == 2
    assert as_json(capsys, env, "label", "mnist", "stable", "--version", "1")[0]["version"] == 1
    served = {v.version for v in env.registry().serving_snapshot() if v.serving}
    assert served == {1, 3}  # current + labelled
    assert mlmodel(capsys, env, "stop", "mnist")[0] == 0
    assert not any(v.serving for v in env.registry().serving_snapshot())
    assert os.path.isdir(os.path.join(env.serving_dir, "root_mnist", "3"))  # kept for rollback
    history = as_json(capsys, env, "history", "mnist")
    assert [h["action"] for h in history] == ["deploy", "deploy", "deploy", "rollback", "rollback",
                                              "rollback", "label", "label", "stop"]
    assert [h["current_version"] for h in history][:6] == [1, 2, 3, 2, 1, 3]
    assert history[-1]["serving"] is False
    code, out, _ = mlmodel(capsys, env, "history", "name=mnist")
    assert code == 0 and "rollback" in out


def test_plain_rollback_follows_what_served_not_version_numbers(capsys, env: Env) -> None:
    for _ in range(3):
        assert mlmodel(capsys, env, "deploy", "mnist")[0] == 0
    assert as_json(capsys, env, "rollback", "mnist")[0]["current_version"] == 2  # 3 was bad
    assert mlmodel(capsys, env, "deploy", "mnist")[0] == 0  # v4 serves
    # Before: the next plain rollback went to 3, the version just rolled back from.
    assert as_json(capsys, env, "rollback", "mnist")[0]["current_version"] == 2
    assert as_json(capsys, env, "rollback", "mnist")[0]["current_version"] == 1
    code, _, err = mlmodel(capsys, env, "rollback", "mnist")
    assert code != 0 and "no version served before 1" in err
    code, out, err = mlmodel(capsys, env, "history", "mnist")
    assert code == 0 and "served, oldest first: 1 (current)" in err
    assert as_json(capsys, env, "rollback", "mnist", "--version", "4")[0]["current_version"] == 4
    code, out, err = mlmodel(capsys, env, "history", "mnist")
    assert "served, oldest first: 1, 4 (current); `mlmodel rollback mnist` returns to 1" in err


def test_serving_order_rules() -> None:
    from registry.api import HistoryEntry, serving_order

    def entries(*steps: tuple[str, int]) -> list[HistoryEntry]:
        return [HistoryEntry(i, 0.0, action, 0, "", "root", current, True, "")
                for i, (action, current) in enumerate(steps)]

    assert serving_order(entries(("deploy", 1), ("deploy", 2), ("label", 2), ("stop", 2),
                                 ("deploy", 3))) == [1, 2, 3]
    assert serving_order(entries(("deploy", 1), ("deploy", 2), ("rollback", 1),
                                 ("deploy", 3))) == [1, 3]
    assert serving_order(entries(("deploy", 1), ("delete", 0), ("deploy", 1))) == [1]
    assert serving_order(entries(("import", 0), ("deploy", 1), ("rollback", 5))) == [1, 5]


def test_delete_refuses_while_serving_then_force(capsys, env: Env) -> None:
    env.add_run("other")
    assert mlmodel(capsys, env, "deploy", "mnist")[0] == 0
    code, out, err = mlmodel(capsys, env, "delete", "mnist")
    assert code == 2 and "serving" in err and "--force" in err and len(err.splitlines()) == 1
    code, out, err = mlmodel(capsys, env, "delete", "mnist", "force=true")
    assert code == 0, err
    assert "other" in out and "mnist" not in out  # prints the remaining list
    assert not os.path.exists(os.path.join(env.serving_dir, "root_mnist"))
    assert env.registry().serving_snapshot() == []
    # A new pipeline run brings the model back, versions restart at 1.
    env.add_run("mnist")
    assert as_json(capsys, env, "deploy", "mnist")[0]["latest_version"] == 1


def test_delete_json_form(capsys, env: Env) -> None:
    env.add_run("other")
    rows = as_json(capsys, env, "delete", "name=mnist")
    assert [r["name"] for r in rows] == ["other"]


@pytest.mark.parametrize("args, needle", [
    (["summary", "nope"], "not found"),
    (["deploy"], "Missing argument"),
    (["bogus"], "No such command"),
    (["rollback", "mnist", "version=x"], "version"),
    (["label", "mnist", "stable"], "version"),
    (["label", "mnist", "bad label!", "version=1"], "label"),
    (["rollback", "mnist"], "never deployed"),
    (["summary", "mnist", "nosuchfield"], "unknown field"),
    (["--metadata", "postgres://x/y", "list"], "mysql://"),
])
def test_input_errors_exit_2_one_line(capsys, env: Env, args: list[str], needle: str) -> None:
    code, out, err = mlmodel(capsys, env, *args)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_deploy_unblessed_model_is_refused(capsys, sqlite_env: Env) -> None:
    sqlite_env.add_run("weak", blessed=False)
    code, _, err = mlmodel(capsys, sqlite_env, "deploy", "weak")
    assert code == 2 and "blessed" in err


def test_summary_state_running_and_error(capsys, sqlite_env: Env) -> None:
    from ml_metadata.proto import metadata_store_pb2 as pb

    sqlite_env.add_run("m")
    sqlite_env.add_run("m", trainer_state=pb.Execution.RUNNING)
    assert as_json(capsys, sqlite_env, "summary", "m", "state") == {"state": "RUNNING"}
    sqlite_env.add_run("m", trainer_state=pb.Execution.FAILED)
    assert as_json(capsys, sqlite_env, "summary", "m", "state") == {"state": "ERROR"}


def test_help_everywhere_teaches_with_examples(capsys, env: Env) -> None:
    for command in ["", "list", "summary", "delete", "import", "export", "deploy", "stop",
                    "rollback", "label", "history", "status"]:
        with pytest.raises(SystemExit) as exit_info:
            main([*([command] if command else []), "--help"])
        out, _ = capsys.readouterr()
        assert exit_info.value.code == 0
        assert "Examples:" in out and "mlmodel" in out or "serving status" in out, command


def test_serving_status_without_server(capsys, env: Env) -> None:
    mlmodel(capsys, env, "deploy", "mnist", "label=stable")
    mlmodel(capsys, env, "deploy", "mnist")
    code, out, err = mlmodel(capsys, env, "status", "mnist")
    assert code == 0 and "registry state only" in err
    rows = as_json(capsys, env, "status", "name=mnist")
    assert [(r["version"], r["state"], r["labels"], r["current"]) for r in rows] == [
        (1, "SERVING", ["stable"], False), (2, "SERVING", [], True)]
