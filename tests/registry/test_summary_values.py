"""``mlmodel summary`` prints computed values or nothing: grid_info from the Tuner when one chose
the hyperparameters, the real state of imported models, dict.tsv only when the model has it."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from benchmarks.tfx_records import connect
from contracts import mlmd as keys
from contracts.signatures import DICTIONARY_RELPATH
from tests.registry.conftest import Env
from tests.registry.test_cli import as_json, mlmodel


@pytest.fixture
def env(sqlite_env: Env, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.setenv("MNIST_TFX_SERVER_URL", "http://127.0.0.1:9")
    return sqlite_env


def _path(key: str) -> pb.Event.Path:
    return pb.Event.Path(steps=[pb.Event.Path.Step(key=key), pb.Event.Path.Step(index=0)])


def add_tuner(env: Env, name: str, trainer_execution_id: int, root: Path) -> int:
    """Records as TFX's Tuner leaves them: a Tuner execution whose HyperParameters and
    TunerResults outputs hold TFX's two files, the first one an input of the Trainer."""
    store = connect(env.metadata)
    best_dir, results_dir = root / "best_hyperparameters", root / "tuner_results"
    best_dir.mkdir(parents=True)
    results_dir.mkdir(parents=True)
    (best_dir / keys.TUNER_BEST_FILE).write_text(json.dumps({
        "space": [{"class_name": "Int", "config": {"name": "hidden_units_1", "default": 64,
                                                   "min_value": 64, "max_value": 256,
                                                   "step": 64, "sampling": "linear"}},
                  {"class_name": "Choice", "config": {"name": "dropout",
                                                      "values": [0.1, 0.3]}}],
        "values": {"hidden_units_1": 192, "dropout": 0.3}}))
    (results_dir / keys.TUNER_RESULTS_FILE).write_text(json.dumps([
        {"trial_id": "1", "score": 0.91, "hidden_units_1": 192, "dropout": 0.3},
        {"trial_id": "0", "score": 0.85, "hidden_units_1": 64, "dropout": 0.1}]))
    hp_type = store.put_artifact_type(pb.ArtifactType(name="HyperParameters"))
    results_type = store.put_artifact_type(pb.ArtifactType(name="TunerResults"))
    tuner_type = store.put_execution_type(
        pb.ExecutionType(name="tfx.components.tuner.component.Tuner"))
    best = pb.Artifact(type_id=hp_type, uri=str(best_dir), state=pb.Artifact.LIVE)
    results = pb.Artifact(type_id=results_type, uri=str(results_dir), state=pb.Artifact.LIVE)
    contexts = [store.get_context_by_type_and_name(keys.PIPELINE_CONTEXT, name)]
    tuner_id, [best_id, _], _ = store.put_execution(
        pb.Execution(type_id=tuner_type, last_known_state=pb.Execution.COMPLETE),
        [(best, pb.Event(type=pb.Event.OUTPUT, path=_path(keys.TUNER_BEST_KEY))),
         (results, pb.Event(type=pb.Event.OUTPUT, path=_path(keys.TUNER_RESULTS_KEY)))],
        contexts)
    [trainer] = store.get_executions_by_id([trainer_execution_id])
    [best] = store.get_artifacts_by_id([best_id])
    store.put_execution(trainer, [(best, pb.Event(type=pb.Event.INPUT,
                                                  path=_path(keys.TUNER_HPARAMS_KEY)))], contexts)
    return int(tuner_id)


def test_grid_info_is_left_out_without_a_tuner(capsys, env: Env) -> None:
    env.add_run("mnist")
    data = as_json(capsys, env, "summary", "mnist")
    assert "grid_info" not in data  # never a made-up {}
    code, out, _ = mlmodel(capsys, env, "summary", "mnist")
    assert code == 0 and not any(line.lstrip("│ ").startswith("grid_info")
                                 for line in out.splitlines())
    assert as_json(capsys, env, "summary", "mnist", "grid_info") == {"grid_info": None}


def test_grid_info_comes_from_the_tuner(capsys, env: Env, tmp_path: Path) -> None:
    ids = env.add_run("mnist")
    tuner_id = add_tuner(env, "mnist", ids["trainer_execution"], tmp_path / "tuner")
    grid = as_json(capsys, env, "summary", "mnist")["grid_info"]
    assert grid["tuner_execution_id"] == tuner_id
    assert grid["best_hyperparameters"] == {"hidden_units_1": 192, "dropout": 0.3}
    assert grid["trials"] == 2 and grid["best_score"] == 0.91
    assert grid["search_space"] == {
        "hidden_units_1": {"min_value": 64, "max_value": 256, "step": 64, "sampling": "linear"},
        "dropout": {"values": [0.1, 0.3]}}
    code, out, _ = mlmodel(capsys, env, "summary", "mnist")
    assert code == 0 and any(line.lstrip("│ ").startswith("grid_info")
                             for line in out.splitlines()) and "hidden_units_1" in out


def test_dictionary_only_when_the_model_has_one(capsys, env: Env) -> None:
    env.add_run("mnist")
    assert as_json(capsys, env, "summary", "mnist")["dictionary"] == "dict.tsv"
    lineage = as_json(capsys, env, "summary", "mnist")["lineage"]
    os.remove(os.path.join(lineage["pushed_destination"], DICTIONARY_RELPATH))
    assert as_json(capsys, env, "summary", "mnist")["dictionary"] is None


def test_imported_model_state_is_read_not_written(capsys, env: Env, tmp_path: Path) -> None:
    archive = str(tmp_path / "model.tar")
    with tarfile.open(archive, "w") as tar:
        tar.add(env.model_dir, arcname="model")
    os.remove(os.path.join(env.model_dir, DICTIONARY_RELPATH))  # the archive keeps its own
    env.registry().import_model("imported", archive, validate=False)
    data = as_json(capsys, env, "summary", "imported")
    assert data["state"] == "DONE" and data["dictionary"] == "dict.tsv"
    shutil.rmtree(data["lineage"]["uri"])  # its stored files are gone
    data = as_json(capsys, env, "summary", "imported")
    assert data["state"] == "ERROR" and data["dictionary"] is None


def test_a_failed_training_is_an_error_state(capsys, env: Env) -> None:
    env.add_run("mnist", trainer_state=pb.Execution.FAILED)
    data = as_json(capsys, env, "summary", "mnist")
    assert data["state"] == "ERROR" and data["lineage"]["pushed_destination"] == ""
    # no push: the trained model's own files are looked at (the fake one carries dict.tsv)
    assert data["dictionary"] == "dict.tsv"
