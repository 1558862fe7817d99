"""After a run: what happened, read back from ML Metadata (blessing, accuracy, pushed version)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

_STATE_NAMES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}
_OUTPUT = metadata_store_pb2.Event.OUTPUT


@dataclasses.dataclass
class RunSummary:
    """One pipeline run as recorded in MLMD."""

    pipeline_name: str
    run_id: str
    states: dict[str, str]                      # component id -> COMPLETE / CACHED / FAILED / ...
    blessed: bool | None = None
    accuracy: float | None = None
    baseline_accuracy: float | None = None
    per_label_accuracy: dict[str, float] = dataclasses.field(default_factory=dict)
    pushed_version: int | None = None
    pushed_path: str | None = None
    model_uri: str | None = None
    tensorboard_dir: str | None = None
    training: dict[str, Any] = dataclasses.field(default_factory=dict)  # the Trainer's budget
    anomalies_uri: str | None = None
    seconds: float | None = None
    component_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    deployed: Any = None

    @property
    def succeeded(self) -> bool:
        return bool(self.states) and all(s in ("COMPLETE", "CACHED") for s in self.states.values())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _prop(artifact: metadata_store_pb2.Artifact, name: str) -> Any:
    for source in (artifact.custom_properties, artifact.properties):
        if name in source:
            value = source[name]
            kind = value.WhichOneof("value")
            return getattr(value, kind) if kind else None
    return None


def _run_contexts(store: metadata_store.MetadataStore, pipeline_name: str) -> list[Any]:
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        return []
    in_pipeline = {e.id for e in store.get_executions_by_context(pipeline.id)}
    runs = []
    for context in store.get_contexts_by_type("pipeline_run"):
        executions = store.get_executions_by_context(context.id)
        if any(e.id in in_pipeline for e in executions):
            runs.append(context)
    return sorted(runs, key=lambda c: (c.create_time_since_epoch, c.id))


def summarize_run(store: metadata_store.MetadataStore, pipeline_name: str,
                  run_id: str | None = None) -> RunSummary | None:
    """The summary of ``run_id`` (default: the pipeline's latest run), or None if none ran."""
    runs = _run_contexts(store, pipeline_name)
    if run_id is not None:
        runs = [c for c in runs if c.name == run_id]
    if not runs:
        return None
    run = runs[-1]
    executions = {e.id: e for e in store.get_executions_by_context(run.id)}
    node_of: dict[int, str] = {}
    prefix = f"{pipeline_name}."
    for node in store.get_contexts_by_type("node"):
        if not node.name.startswith(prefix):
            continue
        for execution in store.get_executions_by_context(node.id):
            if execution.id in executions:
                node_of[execution.id] = node.name[len(prefix):]
    summary = RunSummary(pipeline_name=pipeline_name, run_id=run.name, states={})
    for execution_id, node_id in sorted(node_of.items()):
        summary.states[node_id] = _STATE_NAMES.get(executions[execution_id].last_known_state, "?")
    outputs: dict[str, list[metadata_store_pb2.Artifact]] = {}
    events = store.get_events_by_execution_ids(list(node_of))
    artifact_ids = [e.artifact_id for e in events if e.type == _OUTPUT]
    artifacts = {a.id: a for a in store.get_artifacts_by_id(artifact_ids)} if artifact_ids else {}
    for event in events:
        if event.type == _OUTPUT and event.artifact_id in artifacts:
            outputs.setdefault(node_of[event.execution_id], []).append(artifacts[event.artifact_id])
    for artifact in outputs.get("Trainer", []):
        if _prop(artifact, "tensorboard_dir") is not None or artifact.uri.rstrip("/").endswith("model"):
            summary.model_uri = summary.model_uri or artifact.uri
            summary.tensorboard_dir = summary.tensorboard_dir or _prop(artifact, "tensorboard_dir")
            budget = _prop(artifact, "budget")
            if budget and not summary.training:
                summary.training = json.loads(budget) or {}
    for artifact in outputs.get("Evaluator", []):
        blessed = _prop(artifact, "blessed")
        if blessed is not None:
            summary.blessed = bool(blessed)
        metrics = _prop(artifact, "metrics")
        if metrics:
            parsed = json.loads(metrics)
            summary.accuracy = parsed["overall"].get("sparse_categorical_accuracy")
            diff = parsed["overall"].get("sparse_categorical_accuracy_diff")
            if diff is not None and summary.accuracy is not None:
                summary.baseline_accuracy = summary.accuracy - diff
            summary.per_label_accuracy = {
                label: values.get("sparse_categorical_accuracy")
                for label, values in parsed.get("per_label", {}).items()
            }
    for artifact in outputs.get("Pusher", []):
        if _prop(artifact, "pushed"):
            version = _prop(artifact, "pushed_version")
            summary.pushed_version = int(version) if version and str(version).isdigit() else None
            summary.pushed_path = _prop(artifact, "pushed_destination")
    for artifact in outputs.get("ExampleValidator", []):
        summary.anomalies_uri = artifact.uri
    return summary
