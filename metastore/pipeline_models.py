"""Read the pipeline's models from TFX's own MLMD records (no TensorFlow, no TFX imports).

A pipeline model is named after its TFX ``pipeline`` context. Every ``Model`` artifact attributed to
that context is a candidate; its lineage is found through events: the Trainer execution that output
it, the Evaluator and Pusher executions that took it as input ``model``, and their ``ModelEvaluation``,
``ModelBlessing`` and ``PushedModel`` outputs. Deploy takes the latest pushed (hence blessed) one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from contracts import mlmd as keys
from contracts.mlmd import NODE_CONTEXT, PIPELINE_CONTEXT, PIPELINE_RUN_CONTEXT
from metastore.store import Store, prop


@dataclass
class Candidate:
    """One trained model of a pipeline, with what the pipeline knew about it."""

    model: Any  # pb.Artifact of type Model
    trainer_execution: Any = None
    pipeline_run: str = ""
    evaluation: dict[str, Any] = field(default_factory=dict)
    blessing: Any = None
    pushed: Any = None
    infra_blessing: Any = None  # TFX's InfraValidator output (absent under --no-infra-validation)

    @property
    def model_id(self) -> int:
        return int(self.model.id)

    @property
    def blessed(self) -> bool | None:
        return None if self.blessing is None else bool(prop(self.blessing, keys.BLESSED, 0))

    @property
    def infra_blessed(self) -> bool | None:
        """Did the model server load the model and answer? None when it was not checked."""
        return None if self.infra_blessing is None else bool(
            prop(self.infra_blessing, keys.BLESSED, 0))

    @property
    def infra_failure(self) -> dict[str, Any]:
        """Why infra validation failed: ``{"reason", "log": [server lines], "tries"}`` or {}."""
        if self.infra_blessing is None:
            return {}
        return _json(prop(self.infra_blessing, keys.INFRA_FAILURE, "")) or {}

    @property
    def pushed_dir(self) -> str:
        if self.pushed is None or not prop(self.pushed, keys.PUSHED, 0):
            return ""
        return str(prop(self.pushed, keys.PUSHED_DESTINATION, "") or "")

    @property
    def pushed_version(self) -> int | None:
        """The integer version the Pusher wrote (None when it did not push)."""
        if self.pushed is None or not prop(self.pushed, keys.PUSHED, 0):
            return None
        version = prop(self.pushed, keys.PUSHED_VERSION)
        return int(version) if version and str(version).isdigit() else None

    @property
    def accuracy(self) -> float | None:
        """The Evaluator's overall accuracy of this model."""
        return (self.evaluation.get("overall") or {}).get(keys.ACCURACY_METRIC)

    @property
    def baseline_accuracy(self) -> float | None:
        """The accuracy of the model it was compared with (from TFMA's ``_diff``)."""
        diff = (self.evaluation.get("overall") or {}).get(f"{keys.ACCURACY_METRIC}_diff")
        accuracy = self.accuracy
        return None if diff is None or accuracy is None else accuracy - diff

    @property
    def per_label_accuracy(self) -> dict[str, float]:
        """Label (class index as a string) -> accuracy, from the Evaluator's per-class metrics."""
        return {label: values.get(keys.ACCURACY_METRIC)
                for label, values in (self.evaluation.get("per_label") or {}).items()}


def pipeline_filter(type_name: str, pipeline: str) -> str:
    """An MLMD filter query: artifacts of ``type_name`` attributed to pipeline ``pipeline``."""
    quoted = pipeline.replace("'", "''")
    return (f"type = '{type_name}' AND contexts_a.type = '{PIPELINE_CONTEXT}' "
            f"AND contexts_a.name = '{quoted}'")


def latest_artifact(store: Store, type_name: str, pipeline: str, after_id: int = 0) -> Any:
    """The newest artifact of ``type_name`` in ``pipeline`` with id > after_id, or None."""
    options = metadata_store.ListOptions(
        filter_query=pipeline_filter(type_name, pipeline)
        + (f" AND id > {after_id}" if after_id else ""),
        order_by=metadata_store.OrderByField.ID, is_asc=False, limit=1,
    )
    found = store.read(lambda m: m.get_artifacts(list_options=options), f"reading {type_name}")
    return found[0] if found else None


def latest_pushed(store: Store, pipeline: str, after_id: int = 0) -> Any:
    """The newest PushedModel with ``pushed`` = 1 (Pusher only pushes blessed models)."""
    options = metadata_store.ListOptions(
        filter_query=pipeline_filter("PushedModel", pipeline)
        + (f" AND id > {after_id}" if after_id else ""),
        order_by=metadata_store.OrderByField.ID, is_asc=False, limit=20,
    )
    for artifact in store.read(lambda m: m.get_artifacts(list_options=options), "reading pushes"):
        if prop(artifact, keys.PUSHED, 0) and prop(artifact, keys.PUSHED_DESTINATION, ""):
            return artifact
    return None


def model_of_push(store: Store, pushed: Any) -> Any:
    """The Model artifact the Pusher execution that wrote ``pushed`` took as input."""
    events = store.read(lambda m: m.get_events_by_artifact_ids([pushed.id]), "reading events")
    exec_ids = [e.execution_id for e in events if e.type == pb.Event.OUTPUT]
    if not exec_ids:
        return None
    events = store.read(lambda m: m.get_events_by_execution_ids(exec_ids), "reading events")
    ids = [e.artifact_id for e in events if e.type == pb.Event.INPUT and output_key(e) == "model"]
    models = store.read(lambda m: m.get_artifacts_by_id(ids), "reading models") if ids else []
    return models[0] if models else None


def output_key(event: Any) -> str:
    """The input/output name an event records (``model``, ``blessing``, ...)."""
    for step in event.path.steps:
        if step.HasField("key"):
            return str(step.key)
    return ""


def add_output(result: Candidate, artifact: Any) -> None:
    """File an Evaluator/InfraValidator/Pusher output under the candidate's evaluation,
    blessing, infra blessing or push."""
    kind = artifact.type
    if kind == "ModelEvaluation":
        result.evaluation = _json(prop(artifact, keys.METRICS, "")) or {}
    elif kind == "ModelBlessing":
        result.blessing = artifact
    elif kind == "PushedModel":
        result.pushed = artifact
    elif kind == keys.INFRA_BLESSING:
        result.infra_blessing = artifact


def candidate(store: Store, model: Any) -> Candidate:
    """A Model artifact with its lineage: trainer, run, evaluation, blessing, push."""
    result = Candidate(model=model)
    events = store.read(lambda m: m.get_events_by_artifact_ids([model.id]), "reading events")
    trainer_ids = [e.execution_id for e in events if e.type == pb.Event.OUTPUT]
    consumer_ids = [e.execution_id for e in events
                    if e.type == pb.Event.INPUT and output_key(e) == "model"]
    if trainer_ids:
        trainers = store.read(lambda m: m.get_executions_by_id(trainer_ids[:1]), "reading trainer")
        result.trainer_execution = trainers[0] if trainers else None
        contexts = store.read(lambda m: m.get_contexts_by_execution(trainer_ids[0]), "reading runs")
        run_type = _context_type_ids(store).get(PIPELINE_RUN_CONTEXT)
        for ctx in contexts:
            if ctx.type_id == run_type:
                result.pipeline_run = ctx.name
    if consumer_ids:
        out_events = store.read(lambda m: m.get_events_by_execution_ids(consumer_ids), "events")
        out_ids = sorted({e.artifact_id for e in out_events if e.type == pb.Event.OUTPUT})
        outputs = store.read(lambda m: m.get_artifacts_by_id(out_ids), "reading outputs")
        for artifact in sorted(outputs, key=lambda a: a.id):
            add_output(result, artifact)
    return result


def execution_state(execution: Any) -> str:
    """The seed's model state of the execution that makes a model: READY (none), RUNNING, DONE
    or ERROR."""
    if execution is None:
        return "READY"
    last = execution.last_known_state
    if last in (pb.Execution.NEW, pb.Execution.RUNNING, pb.Execution.UNKNOWN):
        return "RUNNING"
    if last in (pb.Execution.FAILED, pb.Execution.CANCELED):
        return "ERROR"
    return "DONE"  # COMPLETE, or CACHED (TFX reused an earlier run's output)


def trainer_state(store: Store, pipeline: str) -> str:
    """READY (never trained), RUNNING, DONE or ERROR from the newest Trainer execution."""
    node = f"{pipeline}.Trainer".replace("'", "''")
    options = metadata_store.ListOptions(
        filter_query=f"contexts_a.type = '{NODE_CONTEXT}' AND contexts_a.name = '{node}'",
        order_by=metadata_store.OrderByField.ID, is_asc=False, limit=1,
    )  # the newest execution only, not every run's
    executions = store.read(lambda m: m.get_executions(list_options=options), "reading executions")
    return execution_state(executions[0] if executions else None)


def producer(store: Store, artifact: Any) -> Any:
    """The execution that output ``artifact`` (the newest one, should there be several), or
    None."""
    events = store.read(lambda m: m.get_events_by_artifact_ids([artifact.id]), "reading events")
    ids = sorted({e.execution_id for e in events if e.type == pb.Event.OUTPUT})
    found = store.read(lambda m: m.get_executions_by_id(ids[-1:]), "reading executions") \
        if ids else []
    return found[0] if found else None


def tuner_outputs(store: Store, trainer_execution: Any) -> dict[str, Any]:
    """What TFX's Tuner handed the Trainer that made a model, from MLMD's events:
    ``{"execution": the Tuner execution, "best_hyperparameters": HyperParameters artifact,
    "tuner_results": TunerResults artifact or None}``; {} when the Trainer had no tuner."""
    if trainer_execution is None:
        return {}
    events = store.read(lambda m: m.get_events_by_execution_ids([trainer_execution.id]),
                        "reading events")
    ids = [e.artifact_id for e in events
           if e.type == pb.Event.INPUT and output_key(e) == keys.TUNER_HPARAMS_KEY]
    best = store.read(lambda m: m.get_artifacts_by_id(ids[:1]), "reading hyperparameters") \
        if ids else []
    if not best:
        return {}
    tuner = producer(store, best[0])
    results = None
    if tuner is not None:
        out = store.read(lambda m: m.get_events_by_execution_ids([tuner.id]), "reading events")
        out_ids = [e.artifact_id for e in out
                   if e.type == pb.Event.OUTPUT and output_key(e) == keys.TUNER_RESULTS_KEY]
        found = store.read(lambda m: m.get_artifacts_by_id(out_ids[:1]), "reading results") \
            if out_ids else []
        results = found[0] if found else None
    return {"execution": tuner, "best_hyperparameters": best[0], "tuner_results": results}


def grid_info(store: Store, trainer_execution: Any) -> dict[str, Any] | None:
    """``mlmodel summary``'s grid_info: the search of TFX's Tuner that chose the Trainer's
    hyperparameters (its execution, search space, best values, trials and best score), or None
    when the model was trained without a tuner. The values come from the files TFX wrote into
    the Tuner's artifacts (read when they are local; otherwise only where they are)."""
    tuned = tuner_outputs(store, trainer_execution)
    if not tuned:
        return None
    best, results, tuner = tuned["best_hyperparameters"], tuned["tuner_results"], tuned["execution"]
    info: dict[str, Any] = {"tuner_execution_id": int(tuner.id) if tuner is not None else None,
                            "best_hyperparameters_uri": best.uri}
    config = _json_file(os.path.join(best.uri, keys.TUNER_BEST_FILE))
    if isinstance(config, dict):
        info["search_space"] = {
            str(hp["config"]["name"]): {k: v for k, v in hp["config"].items()
                                        if k in ("min_value", "max_value", "step", "sampling",
                                                 "values")}
            for hp in config.get("space", []) if isinstance(hp, dict) and "config" in hp}
        info["best_hyperparameters"] = config.get("values", {})
    trials = _json_file(os.path.join(results.uri, keys.TUNER_RESULTS_FILE)) \
        if results is not None else None
    if isinstance(trials, list):
        info["trials"] = len(trials)
        scores = [t["score"] for t in trials if isinstance(t, dict)
                  and isinstance(t.get("score"), (int, float))]
        info["best_score"] = max(scores) if scores else None
    return info


def _json_file(path: str) -> Any:
    """The JSON in a local file; None when it is remote, missing or not JSON."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _context_type_ids(store: Store) -> dict[str, int]:
    if "context_types" in store.cache:
        return dict(store.cache["context_types"])
    types = {t.name: t.id for t in store.read(lambda m: m.get_context_types(), "reading types")}
    if PIPELINE_RUN_CONTEXT in types:  # cache only once the pipeline has written its types
        store.cache["context_types"] = types
    return types


def _json(text: Any) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def model_facts(model: Any) -> dict[str, Any]:
    """The custom properties our Trainer adds to a Model artifact, decoded."""
    return {
        "hparams": _json(prop(model, keys.HPARAMS, "")) or {},
        "train_examples": prop(model, keys.TRAIN_EXAMPLES, None),
        "eval_examples": prop(model, keys.EVAL_EXAMPLES, None),
        "train_seconds": prop(model, keys.TRAIN_SECONDS, None),
        "class_names": _json(prop(model, keys.CLASS_NAMES, "")) or [],
        "history": _json(prop(model, keys.HISTORY, "")) or [],
        "budget": _json(prop(model, keys.BUDGET, "")) or {},
        "user": prop(model, "user", "") or "",
    }
