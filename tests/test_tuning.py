"""``--tune``: the Tuner runs two trials on tiny data and the Trainer uses its best values."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import pytest

from tests.conftest import TINY_HPARAMS, TinyRun, run_tiny

pytestmark = pytest.mark.slow

TUNED_KEYS = ("hidden_units_1", "hidden_units_2", "dropout", "learning_rate", "optimizer", "epochs")


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-6)  # type: ignore[arg-type]
    return a == b


def test_tuner_runs_and_trainer_uses_best_hyperparameters(
        tiny_pipeline_run: TinyRun, capsys: pytest.CaptureFixture[str]) -> None:
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    from metastore.metadata_config import connection_config
    from registry.cli import cli

    # Its own pipeline over the same data: a tuned model that is blessed would otherwise become
    # the shared run's latest push and baseline, and the cache test of test_pipeline_e2e.py
    # would see a version it did not make whenever it runs after this file.
    run = dataclasses.replace(tiny_pipeline_run, model_name="tiny_tuned")
    # epochs=2 keeps the trials short: the search space's epochs are then 1..2.
    summary, output = run_tiny(run, tune=True, tune_trials=2, hparams=TINY_HPARAMS.replace(epochs=2))
    assert summary.states.get("Tuner") == "COMPLETE", (summary.states, output)
    assert summary.states.get("Trainer") == "COMPLETE"

    store = metadata_store.MetadataStore(connection_config(run.metadata_path))
    node = store.get_context_by_type_and_name("node", f"{run.model_name}.Tuner")
    assert node is not None, "no MLMD node context for the Tuner"
    [execution] = [e for e in store.get_executions_by_context(node.id)
                   if e.last_known_state == pb.Execution.COMPLETE]
    events = store.get_events_by_execution_ids([execution.id])
    outputs = store.get_artifacts_by_id([e.artifact_id for e in events
                                         if e.type == pb.Event.OUTPUT])
    [best] = [a for a in outputs if a.type == "HyperParameters"]
    path = os.path.join(best.uri, "best_hyperparameters.txt")
    assert os.path.isfile(path), f"the Tuner wrote no {path}"
    with open(path) as handle:
        tuned = json.load(handle)["values"]
    assert set(TUNED_KEYS) <= set(tuned), tuned
    [results] = [a for a in outputs if a.type == "TunerResults"]
    with open(os.path.join(results.uri, "tuner_results.json")) as handle:
        trials = json.load(handle)
    assert len(trials) == 2, f"--tune-trials 2 should complete two trials, got {trials}"
    best_trial = trials[0]  # TFX writes them best first
    assert best_trial["score"] == max(t["score"] for t in trials)
    assert all(_same(best_trial[k], tuned[k]) for k in TUNED_KEYS), (best_trial, tuned)
    assert 1 <= int(tuned["epochs"]) <= 2 and 64 <= int(tuned["hidden_units_1"]) <= 256

    # The Trainer of the same run consumed that artifact and recorded the values it trained with.
    trainer_node = store.get_context_by_type_and_name("node", f"{run.model_name}.Trainer")
    trainer = max(store.get_executions_by_context(trainer_node.id), key=lambda e: e.id)
    trainer_events = store.get_events_by_execution_ids([trainer.id])
    assert best.id in {e.artifact_id for e in trainer_events if e.type == pb.Event.INPUT}
    [model] = [a for a in store.get_artifacts_by_id(
        [e.artifact_id for e in trainer_events if e.type == pb.Event.OUTPUT]) if a.type == "Model"]
    hparams = json.loads(model.custom_properties["hparams"].string_value)
    for key in TUNED_KEYS:
        assert _same(hparams[key], tuned[key]), (key, hparams[key], tuned[key])
    assert hparams["filters_1"] == TINY_HPARAMS.filters_1  # untuned values come from the config

    # ... and `mlmodel summary` shows them.
    capsys.readouterr()
    code = cli.main(args=["--metadata", run.metadata_path, "--serving-dir", run.serving_dir,
                          "summary", run.model_name, "parameter,lineage", "--output", "json"],
                    prog_name="mlmodel", standalone_mode=False)
    assert not code
    shown = json.loads(capsys.readouterr().out)
    assert shown["lineage"]["model_artifact_id"] == model.id
    for key in TUNED_KEYS:
        assert _same(shown["parameter"][key], tuned[key]), key


def test_a_trial_stops_early_when_its_objective_stalls() -> None:
    import numpy as np

    from contracts.runtime import configure_tensorflow

    configure_tensorflow()
    import tensorflow as tf

    from modules.tuning import OBJECTIVE, trial_early_stopping

    stop = trial_early_stopping(40)
    assert (stop.patience, stop.start_from_epoch, stop.monitor) == (10, 20, OBJECTIVE)
    model = tf.keras.Sequential([tf.keras.layers.Dense(2, input_shape=(3,))])
    model.compile(optimizer=tf.keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy",
                  metrics=["sparse_categorical_accuracy"])  # lr 0: the objective never moves
    x, y = np.ones((8, 3), np.float32), np.zeros(8, np.int64)
    history = model.fit(x, y, validation_data=(x, y), epochs=40, verbose=0,
                        callbacks=[trial_early_stopping(40)]).history
    assert len(history[OBJECTIVE]) == 31  # epoch 20 watched, then 10 without improvement
