"""TFX-shaped ML Metadata records without running TFX, for the registry benchmark and tests.

``add_pipeline_run`` writes one pipeline run as TFX 1.16 records it (contexts, executions,
artifacts, events, and our custom properties); ``fake_model`` makes a directory shaped like a
SavedModel (deploy copies files, it does not load them). Needs ml-metadata only.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from contracts import mlmd as keys
from contracts.examples import DIGIT_CLASS_NAMES
from contracts.versions import next_version


def connect(metadata: str) -> metadata_store.MetadataStore:
    config = pb.ConnectionConfig()
    if metadata.startswith("mysql://"):
        from metastore.store import parse_backend

        b = parse_backend(metadata)
        config.mysql.host, config.mysql.port = b.host, b.port
        config.mysql.database, config.mysql.user = b.database, b.user
    else:
        config.sqlite.filename_uri = metadata
        config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)


def _path(key: str) -> pb.Event.Path:
    return pb.Event.Path(steps=[pb.Event.Path.Step(key=key), pb.Event.Path.Step(index=0)])


def add_pipeline_run(metadata: str, name: str, model_dir: str, pushed_root: str,
                     blessed: bool = True, accuracy: float = 0.9,
                     trainer_state: int = pb.Execution.COMPLETE,
                     store: metadata_store.MetadataStore | None = None,
                     upstream: bool = False) -> dict[str, int]:
    """Write one pipeline run as TFX 1.16 records it: contexts, executions, artifacts, events.

    The Pusher "pushes" ``model_dir`` to ``<pushed_root>/<name>/<N>`` when blessed. ``store``:
    an open connection to ``metadata`` to reuse (many runs in a row), else one is opened.
    ``upstream``: also ExampleGen, StatisticsGen, SchemaGen, ExampleValidator and Transform, whose
    outputs the Trainer reads (the whole graph's records, as the web console shows them).
    """
    m = store or connect(metadata)
    ctype = {n: m.put_context_type(pb.ContextType(name=n))
             for n in (keys.PIPELINE_CONTEXT, keys.PIPELINE_RUN_CONTEXT, keys.NODE_CONTEXT)}
    # Types TFX already registered (with its properties) are reused as they are.
    atype = {n: m.put_artifact_type(pb.ArtifactType(name=n), can_add_fields=True,
                                    can_omit_fields=True)
             for n in ("Model", "ModelBlessing", "ModelEvaluation", "PushedModel", "Examples",
                       "ExampleStatistics", "Schema", "ExampleAnomalies", "TransformGraph")}
    etype = {n: m.put_execution_type(pb.ExecutionType(name=f"tfx.components.{n.lower()}.component.{n}"),
                                     can_add_fields=True, can_omit_fields=True)
             for n in ("Trainer", "Evaluator", "Pusher", "ExampleGen", "StatisticsGen",
                       "SchemaGen", "ExampleValidator", "Transform")}

    def context(kind: str, cname: str) -> pb.Context:
        found = m.get_context_by_type_and_name(kind, cname)
        if found is not None:
            return found
        [cid] = m.put_contexts([pb.Context(type_id=ctype[kind], name=cname)])
        return m.get_contexts_by_id([cid])[0]

    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}.{uuid.uuid4().hex[:6]}"
    pipeline = context(keys.PIPELINE_CONTEXT, name)
    run = context(keys.PIPELINE_RUN_CONTEXT, run_id)

    def execute(component: str, state: int, inputs: list[tuple[pb.Artifact, str]],
                outputs: list[tuple[pb.Artifact, str]]) -> tuple[int, list[int]]:
        node = context(keys.NODE_CONTEXT, f"{name}.{component}")
        execution = pb.Execution(type_id=etype[component], last_known_state=state)
        pairs = [(a, pb.Event(type=pb.Event.INPUT, path=_path(k))) for a, k in inputs]
        pairs += [(a, pb.Event(type=pb.Event.OUTPUT, path=_path(k))) for a, k in outputs]
        exec_id, artifact_ids, _ = m.put_execution(execution, pairs, [pipeline, run, node])
        for artifact, artifact_id in zip([a for a, _ in pairs], artifact_ids, strict=True):
            artifact.id = artifact_id
        return exec_id, list(artifact_ids)

    model = pb.Artifact(type_id=atype["Model"], uri=os.path.dirname(model_dir),
                        state=pb.Artifact.LIVE)
    for key, value in {keys.HPARAMS: json.dumps({"epochs": 1, "batch_size": 32}),
                       keys.CLASS_NAMES: json.dumps(list(DIGIT_CLASS_NAMES)),
                       keys.HISTORY: json.dumps([{"loss": 1.0, "val_loss": 1.1}]),
                       "model_name": name, keys.TENSORBOARD_DIR: ""}.items():
        model.custom_properties[key].string_value = value
    model.custom_properties[keys.TRAIN_EXAMPLES].int_value = 160
    model.custom_properties[keys.EVAL_EXAMPLES].int_value = 40
    model.custom_properties[keys.TRAIN_SECONDS].double_value = 12.5
    trainer_inputs: list[tuple[pb.Artifact, str]] = []
    if upstream:
        def made(type_name: str, uri: str) -> pb.Artifact:
            return pb.Artifact(type_id=atype[type_name], uri=f"/records/{name}/{run_id}/{uri}",
                               state=pb.Artifact.LIVE)

        examples = made("Examples", "examples")
        execute("ExampleGen", pb.Execution.COMPLETE, [], [(examples, "examples")])
        statistics = made("ExampleStatistics", "statistics")
        execute("StatisticsGen", pb.Execution.COMPLETE, [(examples, "examples")],
                [(statistics, "statistics")])
        schema = made("Schema", "schema")
        execute("SchemaGen", pb.Execution.COMPLETE, [(statistics, "statistics")],
                [(schema, "schema")])
        execute("ExampleValidator", pb.Execution.COMPLETE,
                [(statistics, "statistics"), (schema, "schema")],
                [(made("ExampleAnomalies", "anomalies"), "anomalies")])
        graph = made("TransformGraph", "transform_graph")
        execute("Transform", pb.Execution.COMPLETE, [(examples, "examples"), (schema, "schema")],
                [(graph, "transform_graph")])
        trainer_inputs = [(examples, "examples"), (graph, "transform_graph"), (schema, "schema")]
    trainer_id, _ = execute("Trainer", trainer_state, trainer_inputs, [(model, "model")])
    ids = {"trainer_execution": trainer_id, "model": model.id}
    if trainer_state != pb.Execution.COMPLETE:
        return ids
    evaluation = pb.Artifact(type_id=atype["ModelEvaluation"], uri="/eval", state=pb.Artifact.LIVE)
    evaluation.custom_properties[keys.METRICS].string_value = json.dumps({
        "overall": {keys.ACCURACY_METRIC: accuracy, "example_count": 40},
        "per_label": {str(i): {keys.ACCURACY_METRIC: accuracy}
                      for i in range(len(DIGIT_CLASS_NAMES))}})
    evaluation.custom_properties[keys.MODEL_NAME].string_value = name
    evaluation.custom_properties[keys.EVALUATED_MODEL_ID].int_value = int(model.id)
    blessing = pb.Artifact(type_id=atype["ModelBlessing"], uri="/blessing", state=pb.Artifact.LIVE)
    blessing.custom_properties[keys.BLESSED].int_value = int(blessed)
    execute("Evaluator", pb.Execution.COMPLETE, [(model, "model")],
            [(evaluation, "evaluation"), (blessing, "blessing")])
    ids.update(evaluation=evaluation.id, blessing=blessing.id)
    pushed = pb.Artifact(type_id=atype["PushedModel"], uri="/pushed", state=pb.Artifact.LIVE)
    pushed.custom_properties[keys.PUSHED].int_value = int(blessed)
    if blessed:
        base = os.path.join(pushed_root, name)
        os.makedirs(base, exist_ok=True)
        version = next_version(base)
        destination = os.path.join(base, str(version))
        shutil.copytree(model_dir, destination)
        pushed.custom_properties[keys.PUSHED_DESTINATION].string_value = destination
        pushed.custom_properties[keys.PUSHED_VERSION].string_value = str(version)
    execute("Pusher", pb.Execution.COMPLETE, [(model, "model"), (blessing, "model_blessing")],
            [(pushed, "pushed_model")])
    ids["pushed"] = pushed.id
    return ids


def fake_model(root: Path) -> str:
    """A directory shaped like a SavedModel (deploy copies files; it does not load them)."""
    model = root / "trained" / "Format-Serving"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"\x08\x01" * 64)
    (model / "variables" / "variables.index").write_bytes(b"index")
    (model / "assets.extra").mkdir()
    (model / "assets.extra" / "dict.tsv").write_text("label\ttag\n0\tzero\n")
    return str(model)
