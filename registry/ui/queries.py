"""What the console's pages show, read through ``registry.api`` and MLMD. No TensorFlow.

Every page costs a bounded number of MLMD calls whatever the store's size: the model table comes
from the registry's list index, runs are paged by id, lineage walks events a level at a time.
Records that never change once written (a model's evaluation, a deployment's source) are memoised
by artifact id; the per-model "latest accuracy" is memoised until any new artifact appears.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from contracts import mlmd as keys
from datasources import storage
from metastore import pipeline_models
from metastore.errors import NotFoundError
from metastore.store import DEPLOYMENT, EVALUATION, REGISTRY_ACTION, prop
from registry import list_index
from registry.api import Registry, serving_order
from registry.ui.graph import Graph, Node, blessing_word, layout

MODEL_SORTS = ("name", "user", "serving", "version", "accuracy", "modified", "created")
RUNS_PER_PAGE = 25
LINEAGE_MAX_NODES = 80
STATE_NAMES = {v: k for k, v in pb.Execution.State.items()}


# ---------------------------------------------------------------------------- models table
@dataclass(frozen=True)
class ModelListRow:
    name: str
    user: str
    source: str
    serving: bool
    current_version: int
    labels: dict[str, int]
    accuracy: float | None
    accuracy_source: str      # "pipeline evaluator" | "mlmodel eval" | ""
    created: float
    modified: float


@dataclass
class ModelTable:
    rows: list[ModelListRow]
    total: int
    offset: int
    limit: int


@dataclass
class VersionMetrics:
    version: int
    labels: tuple[str, ...]
    current: bool
    serving: bool
    deployed_at: float
    model_id: int | None
    overall: dict[str, float]
    per_class: dict[str, float]   # class index (string) -> accuracy


@dataclass
class RunRow:
    id: int
    name: str
    pipeline: str
    state: str                 # COMPLETE, FAILED, RUNNING
    started: float
    seconds: float
    executed: int
    cached: int
    failed: int
    components: list[tuple[str, str]]   # (component, state)


@dataclass
class RunDetail:
    row: RunRow
    graph: Graph
    components: list[dict[str, Any]]    # component, state, seconds, inputs, outputs


@dataclass
class ArtifactDetail:
    artifact: Any
    type_name: str
    state: str
    properties: list[tuple[str, str]]
    producer: dict[str, Any] | None
    consumers: list[dict[str, Any]]
    runs: list[str]
    is_examples: bool
    readable: bool                # under the pipeline root or serving dir (files may be shown)


@dataclass
class Memo:
    """Records that never change once written, by artifact id, plus the accuracy table."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    evaluations: dict[int, dict[str, Any]] = field(default_factory=dict)   # model id -> metrics
    deployment_models: dict[int, int | None] = field(default_factory=dict)  # deployment -> model
    accuracy_marker: Any = None
    accuracy: dict[str, tuple[float, str, int]] = field(default_factory=dict)


def _or_none_found(fn: Any) -> Any:
    """An MLMD lookup that raises NotFoundError for "nothing attributed" returns [] instead."""
    def call(m: Any) -> Any:
        try:
            return fn(m)
        except mlmd_errors.NotFoundError:
            return []

    return call


def _value(value: Any) -> str:
    kind = value.WhichOneof("value")
    if kind is None:
        return ""
    return str(getattr(value, kind))


class Console:
    """The pages' data. One per web app; safe to call from the app's worker threads."""

    def __init__(self, registry: Registry, pipeline_root: str) -> None:
        self.registry = registry
        self.store = registry.store
        self.pipeline_root = os.path.realpath(pipeline_root)
        self.memo = Memo()

    # ------------------------------------------------------------------ helpers
    def _read(self, fn: Any, what: str) -> Any:
        return self.store.read(fn, what)

    def _type_names(self, kind: str) -> dict[int, str]:
        cache_key = f"ui_{kind}_types"
        cached = self.store.cache.get(cache_key)
        getter = {"artifact": "get_artifact_types", "execution": "get_execution_types",
                  "context": "get_context_types"}[kind]
        types = self._read(lambda m: getattr(m, getter)(), f"reading {kind} types")
        names = {t.id: t.name for t in types}
        if cached != names:
            self.store.cache[cache_key] = names
        return names

    def readable(self, uri: str) -> bool:
        """Only files under the pipeline root or the serving dir are ever read for a page."""
        if not uri or storage.is_remote(uri):
            return False
        real = os.path.realpath(uri)
        for root in (self.pipeline_root, os.path.realpath(self.registry.serving_dir)):
            if real == root or real.startswith(root + os.sep):
                return True
        return False

    # ------------------------------------------------------------------ models
    def _accuracies(self) -> dict[str, tuple[float, str, int]]:
        """Model name -> (accuracy, where from, artifact id) of its newest evaluation.

        Two queries (every ModelEvaluation and every ``mlmodel eval``), re-read only when a new
        artifact appeared anywhere (one one-row query otherwise).
        """
        marker = list_index.newest(self.store, "artifact")
        with self.memo.lock:
            if marker == self.memo.accuracy_marker:
                return self.memo.accuracy
        found: dict[str, tuple[float, str, int]] = {}
        for artifact in self.store.by_type("artifact", "ModelEvaluation"):
            name = str(prop(artifact, keys.MODEL_NAME, "") or "")
            metrics = pipeline_models._json(prop(artifact, keys.METRICS, "")) or {}
            value = (metrics.get("overall") or {}).get(keys.ACCURACY_METRIC)
            if name and value is not None and (name not in found or artifact.id > found[name][2]):
                found[name] = (float(value), "pipeline evaluator", int(artifact.id))
        for artifact in self.store.by_type("artifact", EVALUATION):
            name = str(prop(artifact, "model_name", "") or "")
            if name and (name not in found or artifact.id > found[name][2]):
                found[name] = (float(prop(artifact, "accuracy", 0.0) or 0.0), "mlmodel eval",
                               int(artifact.id))
        with self.memo.lock:
            self.memo.accuracy_marker, self.memo.accuracy = marker, found
        return found

    def models(self, query: str = "", sort: str = "name", descending: bool = False,
               offset: int = 0, limit: int = 50) -> ModelTable:
        page = self.registry.list_page(limit=None, name_contains=query or None)
        registered = self.registry.registered()
        accuracy = self._accuracies() if page.rows else {}
        rows = []
        for row in page.rows:
            ctx = registered.get(row.name)
            score = accuracy.get(row.name)
            rows.append(ModelListRow(
                name=row.name, user=row.user,
                source=str(prop(ctx, "source", "") or "pipeline") if ctx is not None
                else "pipeline",
                serving=row.serving,
                current_version=int(prop(ctx, "current_version", 0) or 0) if ctx is not None else 0,
                labels=self.registry.labels(ctx), accuracy=score[0] if score else None,
                accuracy_source=score[1] if score else "", created=row.created,
                modified=row.modified))
        sort = sort if sort in MODEL_SORTS else "name"
        sort_key: dict[str, Any] = {
            "name": lambda r: r.name, "user": lambda r: (r.user, r.name),
            "serving": lambda r: (r.serving, r.name), "version": lambda r: r.current_version,
            "accuracy": lambda r: (r.accuracy is not None, r.accuracy or 0.0),
            "modified": lambda r: r.modified, "created": lambda r: r.created}
        rows.sort(key=sort_key[sort], reverse=descending)
        offset = max(0, min(offset, max(0, len(rows) - 1)))
        return ModelTable(rows[offset:offset + limit], len(rows), offset, limit)

    def evaluation_of(self, model_id: int) -> dict[str, Any]:
        """The pipeline Evaluator's metrics of Model artifact ``model_id`` (memoised)."""
        with self.memo.lock:
            if model_id in self.memo.evaluations:
                return self.memo.evaluations[model_id]
        models = self._read(lambda m: m.get_artifacts_by_id([model_id]), "reading the model")
        evaluation = pipeline_models.candidate(self.store, models[0]).evaluation if models else {}
        with self.memo.lock:
            self.memo.evaluations[model_id] = evaluation or {}
        return evaluation or {}

    def _model_of_deployment(self, deployment: Any) -> int | None:
        """The pipeline Model a Deployment's files came from (the deploy's input events)."""
        with self.memo.lock:
            if deployment.id in self.memo.deployment_models:
                return self.memo.deployment_models[deployment.id]
        events = self._read(lambda m: m.get_events_by_artifact_ids([deployment.id]),
                            "reading the deploy")
        made_by = [e.execution_id for e in events if e.type == pb.Event.OUTPUT]
        found: int | None = None
        if made_by:
            inputs = self._read(lambda m: m.get_events_by_execution_ids(made_by[:1]),
                                "reading the deploy")
            ids = [e.artifact_id for e in inputs if e.type == pb.Event.INPUT]
            artifacts = self._read(lambda m: m.get_artifacts_by_id(ids), "reading") if ids else []
            names = self._type_names("artifact")
            model = next((a for a in artifacts if names.get(a.type_id) == "Model"), None)
            found = int(model.id) if model is not None else None
        with self.memo.lock:
            self.memo.deployment_models[deployment.id] = found
        return found

    def version_metrics(self, name: str) -> list[VersionMetrics]:
        """Every deployed version's Evaluator metrics (overall and per class), oldest first."""
        versions = self.registry.versions(name)
        if not versions:
            return []
        deployments = {int(prop(a, "version")): a
                       for a in self.registry.deployments(versions[0].serving_name)}
        result = []
        for version in versions:
            artifact = deployments.get(version.version)
            model_id = self._model_of_deployment(artifact) if artifact is not None else None
            evaluation = self.evaluation_of(model_id) if model_id else {}
            overall = {k: float(v) for k, v in (evaluation.get("overall") or {}).items()
                       if isinstance(v, (int, float))}
            per_class = {label: float(values.get(keys.ACCURACY_METRIC))
                         for label, values in (evaluation.get("per_label") or {}).items()
                         if isinstance(values, dict) and values.get(keys.ACCURACY_METRIC)
                         is not None}
            result.append(VersionMetrics(version.version, version.labels, version.current,
                                         version.serving, version.deployed_at, model_id,
                                         overall, per_class))
        return result

    def model_page(self, name: str) -> dict[str, Any]:
        summary = self.registry.summary(name)
        history = self.registry.history(name)
        return {"summary": summary, "versions": self.registry.versions(name),
                "history": list(reversed(history)), "served": serving_order(history),
                "metrics": self.version_metrics(name)}

    # ------------------------------------------------------------------ runs
    def _run_row(self, run: Any, executions: list[Any], pipelines: dict[int, str]) -> RunRow:
        names = self._type_names("execution")
        executions = sorted(executions, key=lambda e: e.id)
        states = [e.last_known_state for e in executions]
        components = [(names.get(e.type_id, "?").rsplit(".", 1)[-1],
                       STATE_NAMES.get(e.last_known_state, "?")) for e in executions
                      if names.get(e.type_id) != REGISTRY_ACTION]
        if any(s in (pb.Execution.FAILED, pb.Execution.CANCELED) for s in states):
            state = "FAILED"
        elif any(s in (pb.Execution.NEW, pb.Execution.RUNNING) for s in states):
            state = "RUNNING"
        else:
            state = "COMPLETE"
        start = min((e.create_time_since_epoch for e in executions),
                    default=run.create_time_since_epoch)
        end = max((e.last_update_time_since_epoch for e in executions), default=start)
        return RunRow(
            id=int(run.id), name=run.name, pipeline=pipelines.get(run.id, ""), state=state,
            started=start / 1000.0, seconds=max(0.0, (end - start) / 1000.0),
            executed=sum(1 for s in states if s == pb.Execution.COMPLETE),
            cached=sum(1 for s in states if s == pb.Execution.CACHED),
            failed=sum(1 for s in states if s in (pb.Execution.FAILED, pb.Execution.CANCELED)),
            components=components)

    def _pipeline_of(self, executions: list[Any]) -> str:
        if not executions:
            return ""
        contexts = self._read(_or_none_found(lambda m: m.get_contexts_by_execution(executions[0].id)),
                              "reading the run's pipeline")
        ctypes = self._type_names("context")
        return next((c.name for c in contexts if ctypes.get(c.type_id) == keys.PIPELINE_CONTEXT),
                    "")

    def runs(self, before: int | None = None, pipeline: str = "",
             limit: int = RUNS_PER_PAGE) -> tuple[list[RunRow], int | None]:
        """Pipeline runs newest first, ``limit`` per page (``before``: the previous page's last
        id); returns the rows and the next page's ``before`` (None on the last page).
        ``pipeline`` keeps the page's runs of that pipeline only (a page may then be shorter)."""
        if self.store.missing_database:
            return [], None
        query = f"type = '{keys.PIPELINE_RUN_CONTEXT}'"
        if before:
            query += f" AND id < {int(before)}"
        options = metadata_store.ListOptions(filter_query=query,
                                             order_by=metadata_store.OrderByField.ID,
                                             is_asc=False, limit=limit + 1)
        found = self.store.listed("context", options, "reading runs")
        rows = []
        for run in found[:limit]:
            executions = self._read(lambda m, r=run: m.get_executions_by_context(r.id),
                                    "reading the run")
            row = self._run_row(run, executions, {run.id: self._pipeline_of(executions)})
            if not pipeline or row.pipeline == pipeline:
                rows.append(row)
        next_before = int(found[limit - 1].id) if len(found) > limit else None
        return rows, next_before

    def run(self, run_id: int) -> RunDetail:
        found = self._read(lambda m: m.get_contexts_by_id([run_id]), "reading the run")
        ctypes = self._type_names("context")
        if not found or ctypes.get(found[0].type_id) != keys.PIPELINE_RUN_CONTEXT:
            raise NotFoundError(f"pipeline run {run_id} not found; the runs page lists them")
        run = found[0]
        executions = sorted(self._read(lambda m: m.get_executions_by_context(run.id),
                                       "reading the run"), key=lambda e: e.id)
        component_of: dict[int, str] = {}
        pipeline = ""
        for execution in executions:
            contexts = self._read(_or_none_found(lambda m, e=execution: m.get_contexts_by_execution(e.id)),
                                  "reading components")
            for ctx in contexts:
                kind = ctypes.get(ctx.type_id)
                if kind == keys.NODE_CONTEXT:
                    component_of[execution.id] = ctx.name.split(".", 1)[-1]
                elif kind == keys.PIPELINE_CONTEXT:
                    pipeline = ctx.name
        row = self._run_row(run, executions, {run.id: pipeline})
        ids = [e.id for e in executions]
        events = self._read(lambda m: m.get_events_by_execution_ids(ids), "reading events") \
            if ids else []
        artifact_ids = sorted({e.artifact_id for e in events})
        artifacts = {a.id: a for a in self._read(lambda m: m.get_artifacts_by_id(artifact_ids),
                                                 "reading artifacts")} if artifact_ids else {}
        anames = self._type_names("artifact")
        enames = self._type_names("execution")
        graph = Graph()
        producer: dict[int, int] = {}
        for event in events:
            if event.type == pb.Event.OUTPUT:
                producer[event.artifact_id] = event.execution_id
        components = []
        for execution in executions:
            name = component_of.get(execution.id) or enames.get(execution.type_id, "?").rsplit(
                ".", 1)[-1]
            state = STATE_NAMES.get(execution.last_known_state, "?")
            graph.add_node(Node(f"e{execution.id}", name, state, f"#component-{execution.id}",
                                f"execution state-{state.lower()}"))
            mine = [e for e in events if e.execution_id == execution.id]

            def listed(kind: int, mine: list[Any] = mine) -> list[dict[str, Any]]:
                return [{"key": pipeline_models.output_key(e), "id": e.artifact_id,
                         "type": anames.get(artifacts[e.artifact_id].type_id, "?")}
                        for e in mine if e.type == kind and e.artifact_id in artifacts]

            components.append({
                "id": execution.id, "component": name, "state": state,
                "seconds": max(0.0, (execution.last_update_time_since_epoch
                                     - execution.create_time_since_epoch) / 1000.0),
                "inputs": listed(pb.Event.INPUT), "outputs": listed(pb.Event.OUTPUT)})
        for event in events:
            source = producer.get(event.artifact_id)
            if event.type == pb.Event.INPUT and source is not None:
                graph.add_edge(f"e{source}", f"e{event.execution_id}")
        return RunDetail(row, layout(graph), components)

    # ------------------------------------------------------------------ artifacts
    def artifact(self, artifact_id: int) -> ArtifactDetail:
        found = self._read(lambda m: m.get_artifacts_by_id([artifact_id]), "reading the artifact")
        if not found:
            raise NotFoundError(f"artifact {artifact_id} not found")
        artifact = found[0]
        anames = self._type_names("artifact")
        enames = self._type_names("execution")
        ctypes = self._type_names("context")
        events = self._read(lambda m: m.get_events_by_artifact_ids([artifact.id]),
                            "reading events")
        exec_ids = sorted({e.execution_id for e in events})
        executions = {e.id: e for e in self._read(lambda m: m.get_executions_by_id(exec_ids),
                                                  "reading executions")} if exec_ids else {}

        def described(event: Any) -> dict[str, Any]:
            execution = executions.get(event.execution_id)
            type_name = enames.get(execution.type_id, "?") if execution is not None else "?"
            action = str(prop(execution, "action", "") or "") if execution is not None else ""
            return {"id": event.execution_id, "type": type_name.rsplit(".", 1)[-1],
                    "key": pipeline_models.output_key(event), "action": action}

        producer = next((described(e) for e in events if e.type == pb.Event.OUTPUT), None)
        consumers = [described(e) for e in events if e.type == pb.Event.INPUT]
        contexts = self._read(_or_none_found(lambda m: m.get_contexts_by_artifact(artifact.id)),
                              "reading contexts")
        runs = [c.name for c in contexts if ctypes.get(c.type_id) == keys.PIPELINE_RUN_CONTEXT]
        properties = sorted([(k, _value(v)) for k, v in artifact.properties.items()]
                            + [(k, _value(v)) for k, v in artifact.custom_properties.items()])
        type_name = anames.get(artifact.type_id, "?")
        return ArtifactDetail(
            artifact=artifact, type_name=type_name,
            state=pb.Artifact.State.Name(artifact.state), properties=properties,
            producer=producer, consumers=consumers, runs=runs,
            is_examples=type_name == "Examples", readable=self.readable(artifact.uri))

    def run_id_named(self, name: str) -> int | None:
        ctx = self._read(lambda m: m.get_context_by_type_and_name(keys.PIPELINE_RUN_CONTEXT, name),
                         "reading the run")
        return int(ctx.id) if ctx is not None else None

    # ------------------------------------------------------------------ lineage
    def lineage(self, name: str, version: int | None = None) -> tuple[Graph, str]:
        """The graph from a model version back to its data, and down to its evaluation,
        blessing, push and deployments. Without ``version``: the current version, else the
        newest trained model. Returns the graph and what it starts from."""
        versions = self.registry.versions(name)
        chosen = [v for v in versions if v.version == version] if version else \
            [v for v in versions if v.current]
        start: list[int] = []
        what = ""
        if version and not chosen:
            raise NotFoundError(f"model {name!r} has no deployed version {version}; deployed: "
                                f"{[v.version for v in versions] or 'none'}")
        if chosen:
            deployments = self.registry.deployments(chosen[0].serving_name)
            start = [int(a.id) for a in deployments if int(prop(a, "version")) ==
                     chosen[0].version]
            what = f"version {chosen[0].version}"
        if not start:
            summary = self.registry.summary(name)
            model_id = summary.lineage.get("model_artifact_id") or summary.lineage.get(
                "model_version_artifact_id")
            if not model_id:
                raise NotFoundError(f"model {name!r} has no trained or imported model to trace")
            start = [int(model_id)]
            what = what or "the newest trained model"
        return self._walk(start), what

    def _walk(self, start: list[int]) -> Graph:
        anames = self._type_names("artifact")
        enames = self._type_names("execution")
        artifacts: dict[int, Any] = {}
        executions: dict[int, Any] = {}
        edges: list[tuple[str, str]] = []
        seen_exec: set[int] = set()

        def fetch_artifacts(ids: list[int]) -> list[Any]:
            new = [i for i in ids if i not in artifacts]
            if new:
                for a in self._read(lambda m: m.get_artifacts_by_id(new), "reading artifacts"):
                    artifacts[a.id] = a
            return [artifacts[i] for i in ids if i in artifacts]

        # Upstream: each artifact's producer, and the producer's inputs, to the sources.
        frontier = list(start)
        fetch_artifacts(frontier)
        while frontier and len(artifacts) + len(executions) < LINEAGE_MAX_NODES:
            events = self._read(lambda m, f=frontier: m.get_events_by_artifact_ids(f),
                                "reading lineage")
            producers = sorted({e.execution_id for e in events if e.type == pb.Event.OUTPUT}
                               - seen_exec)
            for e in events:
                if e.type == pb.Event.OUTPUT:
                    edges.append((f"e{e.execution_id}", f"a{e.artifact_id}"))
            if not producers:
                break
            seen_exec.update(producers)
            inputs = self._read(lambda m, p=producers: m.get_events_by_execution_ids(p),
                                "reading lineage")
            frontier = sorted({e.artifact_id for e in inputs if e.type == pb.Event.INPUT}
                              - set(artifacts))
            for e in inputs:
                if e.type == pb.Event.INPUT:
                    edges.append((f"a{e.artifact_id}", f"e{e.execution_id}"))
            fetch_artifacts(frontier)
        # Beside the path: what validated the statistics against the schema (the anomalies).
        checked = [i for i, a in artifacts.items()
                   if anames.get(a.type_id) == "ExampleStatistics"]
        if checked:
            events = self._read(lambda m: m.get_events_by_artifact_ids(checked), "reading lineage")
            consumers = sorted({e.execution_id for e in events if e.type == pb.Event.INPUT}
                               - seen_exec)
            outputs = self._read(lambda m: m.get_events_by_execution_ids(consumers),
                                 "reading lineage") if consumers else []
            made_ids = sorted({e.artifact_id for e in outputs if e.type == pb.Event.OUTPUT})
            made = self._read(lambda m: m.get_artifacts_by_id(made_ids),
                              "reading artifacts") if made_ids else []
            anomalies = {int(a.id): a for a in made
                         if anames.get(a.type_id) == "ExampleAnomalies"}
            artifacts.update(anomalies)
            validators = {e.execution_id for e in outputs if e.artifact_id in anomalies}
            for e in outputs:
                if e.execution_id not in validators:
                    continue
                if e.type == pb.Event.INPUT and e.artifact_id in artifacts:
                    edges.append((f"a{e.artifact_id}", f"e{e.execution_id}"))
                elif e.type == pb.Event.OUTPUT and e.artifact_id in anomalies:
                    edges.append((f"e{e.execution_id}", f"a{e.artifact_id}"))
            seen_exec.update(validators)
        # Downstream of each Model reached: what evaluated, blessed and pushed it; then the
        # deployments made from those pushes (two hops).
        frontier = [i for i, a in artifacts.items()
                    if anames.get(a.type_id) in ("Model", "PushedModel")]
        for _ in range(2):
            if not frontier:
                break
            events = self._read(lambda m, f=frontier: m.get_events_by_artifact_ids(f),
                                "reading lineage")
            consumers = sorted({e.execution_id for e in events if e.type == pb.Event.INPUT})
            if not consumers:
                break
            outputs = self._read(lambda m, c=consumers: m.get_events_by_execution_ids(c),
                                 "reading lineage")
            made = sorted({e.artifact_id for e in outputs if e.type == pb.Event.OUTPUT})
            fetch_artifacts(made)
            keep = {e.execution_id for e in outputs if e.type == pb.Event.OUTPUT}
            for e in events:
                if e.type == pb.Event.INPUT and e.execution_id in keep:
                    edges.append((f"a{e.artifact_id}", f"e{e.execution_id}"))
            for e in outputs:
                if e.type == pb.Event.OUTPUT:
                    edges.append((f"e{e.execution_id}", f"a{e.artifact_id}"))
            seen_exec.update(keep)
            frontier = [i for i in made if anames.get(artifacts[i].type_id) == "PushedModel"]
            if len(artifacts) > LINEAGE_MAX_NODES:
                break
        exec_ids = sorted(seen_exec)
        if exec_ids:
            for execution in self._read(lambda m: m.get_executions_by_id(exec_ids),
                                        "reading executions"):
                executions[execution.id] = execution
        graph = Graph()
        for artifact in sorted(artifacts.values(), key=lambda a: a.id):
            type_name = anames.get(artifact.type_id, "?")
            subtitle = f"#{artifact.id}"
            if type_name == DEPLOYMENT:
                subtitle += f" version {prop(artifact, 'version', '?')}"
            else:
                subtitle += blessing_word(type_name, prop(artifact, keys.BLESSED, 0))
            kind = "deployment" if type_name == DEPLOYMENT else "artifact"
            graph.add_node(Node(f"a{artifact.id}", type_name.replace("mlmodel.", ""), subtitle,
                                f"/artifacts/{artifact.id}", kind))
        for execution in sorted(executions.values(), key=lambda e: e.id):
            type_name = enames.get(execution.type_id, "?")
            title = (str(prop(execution, "action", "")) if type_name == REGISTRY_ACTION
                     else type_name.rsplit(".", 1)[-1])
            graph.add_node(Node(f"e{execution.id}", title,
                                STATE_NAMES.get(execution.last_known_state, "?"),
                                f"/executions/{execution.id}", "execution"))
        for source, target in edges:
            graph.add_edge(source, target)
        return layout(graph)

    def execution_run(self, execution_id: int) -> int | None:
        """The pipeline run an execution belongs to (for links from lineage nodes)."""
        contexts = self._read(_or_none_found(lambda m: m.get_contexts_by_execution(execution_id)),
                              "reading the execution")
        ctypes = self._type_names("context")
        return next((int(c.id) for c in contexts
                     if ctypes.get(c.type_id) == keys.PIPELINE_RUN_CONTEXT), None)

    def execution_model(self, execution_id: int) -> str | None:
        """The registered model a registry Action belongs to."""
        executions = self._read(lambda m: m.get_executions_by_id([execution_id]),
                                "reading the execution")
        if not executions:
            return None
        name = prop(executions[0], "model_name", "")
        return str(name) if name else None


def dumps(value: Any) -> str:
    """Properties that hold JSON, indented for the page; other text unchanged."""
    try:
        return json.dumps(json.loads(value), indent=2, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)
