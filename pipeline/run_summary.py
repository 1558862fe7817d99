"""After a run: what happened, read back from ML Metadata (blessing, accuracy, pushed version).

The run's lineage (its Model, evaluation, blessing and push) is read by the registry's
``metastore.pipeline_runs``, the same reader ``mlmodel report`` uses.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from contracts import mlmd as keys
from metastore import pipeline_runs
from metastore.store import prop

_STATE_NAMES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}


@dataclasses.dataclass
class RunSummary:
    """One pipeline run as recorded in MLMD."""

    pipeline_name: str
    run_id: str
    states: dict[str, str]                      # component id -> COMPLETE / CACHED / FAILED / ...
    blessed: bool | None = None
    infra_blessed: bool | None = None  # None: no InfraValidator ran (--no-infra-validation)
    infra_failure: dict[str, Any] = dataclasses.field(default_factory=dict)
    infra_requests: int | None = None
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def summarize_run(store: metadata_store.MetadataStore, pipeline_name: str,
                  run_id: str | None = None) -> RunSummary | None:
    """The summary of ``run_id`` (default: the pipeline's latest run), or None if none ran."""
    reader = pipeline_runs.DirectReader(store)
    runs = pipeline_runs.run_contexts(reader, pipeline_name)
    if run_id is not None:
        runs = [c for c in runs if c.name == run_id]
    if not runs:
        return None
    record = pipeline_runs.read_run(reader, runs[-1], pipeline_name)
    summary = RunSummary(pipeline_name=pipeline_name, run_id=record.name, states={
        node: _STATE_NAMES.get(state, "?") for node, state in record.states().items()})
    run = pipeline_runs.run_candidate(record)
    if run.model is not None:
        summary.model_uri = run.model.uri
        summary.tensorboard_dir = prop(run.model, keys.TENSORBOARD_DIR)
        budget = prop(run.model, keys.BUDGET)
        summary.training = (json.loads(budget) or {}) if budget else {}
    summary.blessed = run.blessed
    summary.infra_blessed = run.infra_blessed
    summary.infra_failure = run.infra_failure
    if run.infra_blessing is not None:
        summary.infra_requests = prop(run.infra_blessing, keys.INFRA_REQUESTS)
    if run.evaluation:
        summary.accuracy = run.accuracy
        summary.baseline_accuracy = run.baseline_accuracy
        summary.per_label_accuracy = run.per_label_accuracy
    summary.pushed_version = run.pushed_version
    summary.pushed_path = (run.pushed_dir or None) if run.pushed is not None else None
    for artifact in record.by_node("ExampleValidator"):
        summary.anomalies_uri = artifact.uri
    return summary


INFRA_NODE = "InfraValidator"


def infra_lines(summary: RunSummary) -> list[str]:
    """The InfraValidator's lines of the end-of-run report: result, seconds, and on failure why,
    with the model server's own log lines. None when the step did not run."""
    if summary.infra_blessed is None and INFRA_NODE not in summary.states:
        return ["  served:        not checked (--no-infra-validation)"]
    seconds = summary.component_seconds.get(INFRA_NODE)
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    if summary.states.get(INFRA_NODE) == "CACHED":
        took = " (cached)"
    if summary.infra_blessed:
        sent = summary.infra_requests
        answered = f", answered {sent} eval example(s)" if sent else ""
        return [f"  served:        yes: `serving start` loaded it{answered}{took}"]
    failure = summary.infra_failure or {}
    lines = [f"  served:        NO: the model server could not serve it{took}; nothing pushed",
             f"  why not:       {failure.get('reason', 'see the InfraValidator in the log')}"]
    lines += [f"    server log:  {line}" for line in failure.get("log", [])]
    return lines
