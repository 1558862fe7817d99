"""The whole graph on tiny generated data: MLMD records, pushed layout, cache, blessing, retrain.

These share one session run (``tiny_pipeline_run``) and re-run it with changes; each test states
its expectations relative to what is on disk when it starts.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.conftest import TINY_HPARAMS, TinyRun, run_tiny

pytestmark = pytest.mark.slow

COMPONENTS = ["ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform",
              "Trainer", "LatestBlessedModelResolver", "Evaluator", "InfraValidator", "Pusher"]
ARTIFACT_TYPES = {
    "ExampleGen": {"Examples"},
    "StatisticsGen": {"ExampleStatistics"},
    "SchemaGen": {"Schema"},
    "ExampleValidator": {"ExampleAnomalies"},
    "Transform": {"TransformGraph", "Examples"},
    "Trainer": {"Model", "ModelRun"},
    "Evaluator": {"ModelEvaluation", "ModelBlessing"},
    "InfraValidator": {"InfraBlessing"},
    "Pusher": {"PushedModel"},
}


def _store(run: TinyRun):
    from ml_metadata.metadata_store import metadata_store

    from metastore.metadata_config import connection_config

    return metadata_store.MetadataStore(connection_config(run.metadata_path))


def _outputs_by_component(run: TinyRun, run_id: str) -> dict[str, list]:
    """{component id: [output artifacts]} of one pipeline run, read from MLMD."""
    from ml_metadata.proto import metadata_store_pb2

    store = _store(run)
    run_context = store.get_context_by_type_and_name("pipeline_run", run_id)
    executions = {e.id for e in store.get_executions_by_context(run_context.id)}
    types = {t.id: t.name for t in store.get_artifact_types()}
    result: dict[str, list] = {}
    for name in COMPONENTS:
        node = store.get_context_by_type_and_name("node", f"{run.model_name}.{name}")
        ids = [e.id for e in store.get_executions_by_context(node.id) if e.id in executions]
        events = [ev for ev in store.get_events_by_execution_ids(ids)
                  if ev.type == metadata_store_pb2.Event.OUTPUT]
        artifacts = store.get_artifacts_by_id([ev.artifact_id for ev in events]) if events else []
        result[name] = [(types[a.type_id], a) for a in artifacts]
    return result


def _tree_digest(path: str) -> str:
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            digest.update(full.encode())
            digest.update(Path(full).read_bytes())
    return digest.hexdigest()


def _versions(run: TinyRun) -> list[str]:
    base = Path(run.serving_dir) / run.model_name
    return sorted((p.name for p in base.iterdir() if p.name.isdigit()), key=int) if base.exists() else []


def test_first_run_records_every_component_in_mlmd(tiny_pipeline_run: TinyRun) -> None:
    run = tiny_pipeline_run
    summary = run.summary
    assert summary.states and set(summary.states.values()) <= {"COMPLETE", "CACHED"}, summary.states
    assert set(summary.states) == set(COMPONENTS)
    assert summary.blessed is True and summary.pushed_version == 1
    assert 0.5 <= summary.accuracy <= 1.0
    assert set(summary.per_label_accuracy) == {str(i) for i in range(10)}
    outputs = _outputs_by_component(run, summary.run_id)
    for component, expected in ARTIFACT_TYPES.items():
        assert expected <= {t for t, _ in outputs[component]}, component
    # Transform computes no statistics, schema or anomalies of its own (disable_statistics):
    # StatisticsGen, SchemaGen and ExampleValidator have the raw data's
    assert not {"ExampleStatistics", "Schema", "ExampleAnomalies"} & {
        t for t, _ in outputs["Transform"]}
    model = next(a for t, a in outputs["Trainer"] if t == "Model")
    props = model.custom_properties
    assert json.loads(props["hparams"].string_value)["filters_1"] == TINY_HPARAMS.filters_1
    assert props["train_examples"].int_value == 160 and props["eval_examples"].int_value == 40
    assert props["train_seconds"].double_value > 0
    assert len(json.loads(props["history"].string_value)) == TINY_HPARAMS.epochs
    budget = json.loads(props["budget"].string_value)
    assert budget["epochs"] == budget["epochs_run"] == TINY_HPARAMS.epochs
    assert budget["train_examples"] == 160 and "--epochs" in budget["reason"]
    assert 1 <= budget["best_epoch"] <= TINY_HPARAMS.epochs
    assert json.loads(props["class_names"].string_value)[3] == "three"
    assert os.path.isdir(props["tensorboard_dir"].string_value)
    evaluation = next(a for t, a in outputs["Evaluator"] if t == "ModelEvaluation")
    metrics = json.loads(evaluation.custom_properties["metrics"].string_value)
    assert metrics["overall"]["sparse_categorical_accuracy"] == pytest.approx(summary.accuracy)
    assert metrics["overall"]["example_count"] == 40
    pushed = next(a for t, a in outputs["Pusher"] if t == "PushedModel")
    assert pushed.custom_properties["pushed_version"].string_value == "1"
    # The user-facing summary names the outcome and where things are.
    for text in ("blessed:       yes", "pushed:        version 1", "tensorboard", "metadata:",
                 "training:      batch 32, 6 epochs x 5 steps planned"):
        assert text in run.output
    for name in COMPONENTS:
        assert name in run.output


def test_pushed_version_layout(tiny_pipeline_run: TinyRun) -> None:
    import tensorflow as tf

    base = Path(tiny_pipeline_run.serving_dir) / tiny_pipeline_run.model_name
    version = base / "1"
    assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
    assert (version / "assets.extra" / "dict.tsv").read_text().splitlines()[1] == "0\tzero"
    # no staging left, by the prefixes the publish module itself stages under
    from contracts import publish

    assert os.path.basename(publish.staging_dir(str(base))).startswith(publish.STAGING_PREFIX)
    prefixes = (publish.STAGING_PREFIX, publish.LEGACY_PUSH_PREFIX)
    assert not [p.name for p in base.iterdir() if p.name.startswith(prefixes)]
    loaded = tf.saved_model.load(str(version))
    assert {"serving_default", "serving_examples", "serving_images"} <= set(loaded.signatures)


def test_second_run_hits_the_cache_and_pushes_nothing_new(tiny_pipeline_run: TinyRun) -> None:
    run = tiny_pipeline_run
    before = _versions(run)
    summary, output = run_tiny(run, deploy_label="stable", deploy_user="tester")
    for name in ("ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform",
                 "Trainer"):
        assert summary.states[name] == "CACHED", (name, summary.states)
    assert "cached in" in output
    # Same model, blessed again against itself: the Pusher reuses its version, no duplicate.
    assert _versions(run) == before
    assert summary.pushed_version == int(before[-1])
    # --deploy: the blessed push is deployed through the registry, and the server would see it.
    from registry.api import open_registry

    # The serving name is fixed at the model's first deploy (another test may have made it).
    serving_name = summary.deployed.serving_name
    assert serving_name.endswith("_tiny")
    assert f"deployed:      {serving_name} version {summary.deployed.latest_version}" in output
    snapshot = open_registry(run.metadata_path, run.serving_dir).serving_snapshot()
    current = [v for v in snapshot if v.serving_name == serving_name and v.current]
    assert current and current[0].version == summary.deployed.latest_version
    assert "stable" in current[0].labels
    assert (Path(current[0].path) / "saved_model.pb").is_file()


def test_worse_model_is_neither_blessed_nor_pushed(tiny_pipeline_run: TinyRun) -> None:
    run = tiny_pipeline_run
    before = _versions(run)
    digests = {v: _tree_digest(str(Path(run.serving_dir) / run.model_name / v)) for v in before}
    worse = TINY_HPARAMS.replace(epochs=1, learning_rate=1e-5)
    summary, output = run_tiny(run, hparams=worse)
    assert summary.states["Trainer"] == "COMPLETE"
    assert summary.blessed is False
    assert summary.pushed_version is None
    assert "nothing (serving_model/ unchanged)" in output
    # The summary names the failed threshold, the achieved value and the flags that matter.
    why = [line for line in output.splitlines() if "why not:" in line]
    assert why and any("--accuracy-threshold" in w or "--max-accuracy-drop" in w for w in why)
    assert f"{summary.accuracy:.4f}" in why[0]
    assert any("--epochs" in w for w in why)
    assert _versions(run) == before
    for version, digest in digests.items():
        assert _tree_digest(str(Path(run.serving_dir) / run.model_name / version)) == digest


def test_warm_start_continues_from_the_latest_model(tiny_pipeline_run: TinyRun) -> None:
    run = tiny_pipeline_run
    # The latest Model must be a trained one whatever ran before (the worse-model test leaves an
    # untrained one): a fresh run with slightly different settings makes it so.
    first, _ = run_tiny(run, hparams=TINY_HPARAMS.replace(dropout=0.15))
    base = next(a for t, a in _outputs_by_component(run, first.run_id)["Trainer"] if t == "Model")
    summary, _ = run_tiny(run, warm_start=True, hparams=TINY_HPARAMS.replace(epochs=2))
    assert summary.states["LatestModelResolver"] == "COMPLETE"
    outputs = _outputs_by_component(run, summary.run_id)
    model = next(a for t, a in outputs["Trainer"] if t == "Model")
    warm_from = model.custom_properties["warm_start_from"].string_value
    assert warm_from == os.path.join(base.uri, "keras", "weights.h5") and os.path.isfile(warm_from)
    # Two more epochs on top of a trained model beat two epochs from scratch on this data.
    assert summary.accuracy >= 0.5


def test_trainer_streams_splits_bigger_than_the_in_memory_limit(tiny_pipeline_run: TinyRun) -> None:
    run = tiny_pipeline_run
    summary, _ = run_tiny(run, in_memory_examples=10, hparams=TINY_HPARAMS.replace(dropout=0.12))
    assert summary.states["Trainer"] == "COMPLETE"
    model = next(a for t, a in _outputs_by_component(run, summary.run_id)["Trainer"]
                 if t == "Model")
    with open(os.path.join(model.uri, "training_summary.json")) as handle:
        trained = json.load(handle)
    # 10 classes x 16 training and 4 eval images, counted from the streamed files
    assert (trained["train_examples"], trained["eval_examples"]) == (160, 40)
    assert len(trained["history"]) == TINY_HPARAMS.epochs
    assert summary.accuracy is not None and summary.accuracy > 0.3


def test_mixed_bfloat16_trains_and_serves_a_float32_model(tiny_pipeline_run: TinyRun) -> None:
    """--precision mixed_bfloat16 through the whole graph: the Trainer computes in bfloat16,
    what it exports (and what TFMA, InfraValidator and the Pusher see) is float32."""
    import tensorflow as tf

    run = tiny_pipeline_run
    summary, output = run_tiny(run, hparams=TINY_HPARAMS.replace(precision="mixed_bfloat16",
                                                                 dropout=0.11))
    assert set(summary.states.values()) <= {"COMPLETE", "CACHED"}, summary.states
    assert summary.states["Trainer"] == summary.states["InfraValidator"] == "COMPLETE"
    assert summary.accuracy is not None and summary.accuracy > 0.3
    outputs = _outputs_by_component(run, summary.run_id)
    model = next(a for t, a in outputs["Trainer"] if t == "Model")
    props = model.custom_properties
    assert json.loads(props["hparams"].string_value)["precision"] == "mixed_bfloat16"
    budget = json.loads(props["budget"].string_value)
    assert budget["precision"] == "mixed_bfloat16"
    assert "mixed_bfloat16 (set: --precision)" in budget["reason"]
    assert "mixed_bfloat16" in output  # the run summary names it
    exported = tf.saved_model.load(os.path.join(model.uri, "Format-Serving"))
    dtypes = {v.dtype for v in exported.variables}
    assert dtypes == {tf.float32}, dtypes
    signature = exported.signatures["serving_default"]
    (name, spec), = signature.structured_input_signature[1].items()
    assert spec.dtype == tf.float32
    probabilities = signature(**{name: tf.random.uniform([3, 28, 28, 1])})["probabilities"]
    assert probabilities.dtype == tf.float32
    assert probabilities.numpy().sum(axis=1) == pytest.approx([1.0] * 3, abs=1e-5)
    # The bfloat16 run's Keras weights (what --warm-start reads) are float32 too.
    import h5py
    import numpy as np

    stored: set[np.dtype] = set()
    with h5py.File(os.path.join(model.uri, "keras", "weights.h5"), "r") as weights:
        weights.visititems(lambda _, item: stored.add(item.dtype)
                           if isinstance(item, h5py.Dataset) else None)
    assert stored == {np.dtype("float32")}, stored


def test_bad_data_stops_the_run_and_keeps_what_was_pushed(tiny_pipeline_run: TinyRun,
                                                           tmp_path: Path) -> None:
    from pipeline.components.image_example_gen import DataError
    from pipeline.run import PipelineFailed
    from tests.datagen import write_png_folder

    run = tiny_pipeline_run
    before = {v: _tree_digest(str(Path(run.serving_dir) / run.model_name / v))
              for v in _versions(run)}
    data = write_png_folder(tmp_path / "data", n_per_class=4, split_folders=True)
    broken = data / "training" / "3" / "1.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    # A bad file found while reading is a DataError, like a layout error found before the run
    # (the runners exit 2 for both).
    with pytest.raises(DataError, match="1.png") as raised:
        run_tiny(run, data=str(data))
    assert not isinstance(raised.value, PipelineFailed) and "full log:" in str(raised.value)
    after = {v: _tree_digest(str(Path(run.serving_dir) / run.model_name / v))
             for v in _versions(run)}
    assert after == before
