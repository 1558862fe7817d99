"""Read one pipeline run back from TFX's MLMD records (no TensorFlow, no TFX imports).

A run is a ``pipeline_run`` context; its executions belong to ``node`` contexts named
``<pipeline>.<component id>``. ``read_run`` collects what each execution output (by component and
by output key); ``run_candidate`` files the run's own Model with the evaluation, blessing and push
that the same run recorded (``pipeline_models.candidate`` instead follows one Model across runs).
Used by ``mlmodel report`` and the pipeline's run summary, which hands in a bare MetadataStore.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from contracts import mlmd as keys
from metastore.pipeline_models import Candidate, add_output, output_key
from metastore.store import prop, retry_busy

T = TypeVar("T")


class Reader(Protocol):
    """What these functions need of a store: ``metastore.store.Store`` or ``DirectReader``."""

    def read(self, fn: Callable[[metadata_store.MetadataStore], T], what: str) -> T: ...


class DirectReader:
    """A bare MetadataStore as a ``Reader``; reads retry while the database is busy."""

    def __init__(self, mlmd: metadata_store.MetadataStore) -> None:
        self.mlmd = mlmd

    def read(self, fn: Callable[[metadata_store.MetadataStore], T], what: str) -> T:
        return retry_busy(lambda: fn(self.mlmd), what)


@dataclass
class RunRecord:
    """One pipeline run: its executions, their components and their output artifacts."""

    run: Any  # pb.Context of type pipeline_run
    executions: dict[int, Any] = field(default_factory=dict)  # id -> pb.Execution
    nodes: dict[int, str] = field(default_factory=dict)  # execution id -> component id
    outputs: list[tuple[int, str, Any]] = field(default_factory=list)  # (execution, key, artifact)

    @property
    def name(self) -> str:
        return str(self.run.name)

    def by_node(self, component: str) -> list[Any]:
        """Output artifacts of the run's ``component`` executions, in event order."""
        return [a for e, _, a in self.outputs if self.nodes.get(e) == component]

    def by_key(self, key: str) -> list[Any]:
        """Output artifacts recorded under output key ``key`` (e.g. ``statistics``)."""
        return [a for _, k, a in self.outputs if k == key]

    def states(self) -> dict[str, int]:
        """Component id -> its execution's ``last_known_state``, in execution order."""
        return {node: self.executions[e].last_known_state for e, node in sorted(self.nodes.items())}


def run_contexts(store: Reader, pipeline: str) -> list[Any]:
    """The ``pipeline_run`` contexts with an execution of ``pipeline``, oldest first."""
    context = store.read(lambda m: m.get_context_by_type_and_name(keys.PIPELINE_CONTEXT, pipeline),
                         "reading the pipeline")
    if context is None:
        return []
    in_pipeline = {e.id for e in store.read(lambda m: m.get_executions_by_context(context.id),
                                            "reading executions")}
    runs = []
    for run in store.read(lambda m: m.get_contexts_by_type(keys.PIPELINE_RUN_CONTEXT),
                          "reading runs"):
        executions = store.read(lambda m, r=run: m.get_executions_by_context(r.id),
                                "reading executions")
        if any(e.id in in_pipeline for e in executions):
            runs.append(run)
    return sorted(runs, key=lambda c: (c.create_time_since_epoch, c.id))


def run_context(store: Reader, run_name: str) -> Any:
    """The ``pipeline_run`` context called ``run_name``, or None."""
    return store.read(lambda m: m.get_context_by_type_and_name(keys.PIPELINE_RUN_CONTEXT,
                                                               run_name), "reading the run")


def read_run(store: Reader, run: Any, pipeline: str) -> RunRecord:
    """Every execution of ``run`` with its component (``pipeline``'s nodes) and outputs."""
    record = RunRecord(run=run)
    record.executions = {e.id: e for e in store.read(
        lambda m: m.get_executions_by_context(run.id), "reading executions")}
    prefix = f"{pipeline}."
    for node in store.read(lambda m: m.get_contexts_by_type(keys.NODE_CONTEXT), "reading nodes"):
        if not node.name.startswith(prefix):
            continue
        for execution in store.read(lambda m, n=node: m.get_executions_by_context(n.id),
                                    "reading executions"):
            if execution.id in record.executions:
                record.nodes[execution.id] = node.name[len(prefix):]
    if not record.executions:
        return record
    events = store.read(lambda m: m.get_events_by_execution_ids(list(record.executions)),
                        "reading events")
    outputs = [e for e in events if e.type == pb.Event.OUTPUT]
    ids = sorted({e.artifact_id for e in outputs})
    artifacts = {a.id: a for a in store.read(lambda m: m.get_artifacts_by_id(ids),
                                             "reading artifacts")} if ids else {}
    record.outputs = [(e.execution_id, output_key(e), artifacts[e.artifact_id])
                      for e in outputs if e.artifact_id in artifacts]
    return record


def _is_model(artifact: Any) -> bool:
    return (artifact.type == "Model" or prop(artifact, keys.TENSORBOARD_DIR) is not None
            or artifact.uri.rstrip("/").endswith("model"))


def run_candidate(record: RunRecord) -> Candidate:
    """The run's Model with the evaluation, blessing and push of the same run.

    ``model`` is None when the run's Trainer output no model (it failed or did not run); the
    Evaluator's and Pusher's outputs of the run are filed all the same.
    """
    models = [a for a in record.by_node("Trainer") if _is_model(a)]
    result = Candidate(model=models[0] if models else None, pipeline_run=record.name)
    trainers = [e for e, node in sorted(record.nodes.items()) if node == "Trainer"]
    result.trainer_execution = record.executions[trainers[0]] if trainers else None
    for artifact in record.by_node("Evaluator"):
        if artifact.type != "ModelBlessing" or prop(artifact, keys.BLESSED) is not None:
            add_output(result, artifact)
    for artifact in record.by_node("InfraValidator"):
        add_output(result, artifact)
    for artifact in record.by_node("Pusher"):
        add_output(result, artifact)
    return result
