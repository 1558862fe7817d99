"""Gather what ``mlmodel report`` shows: MLMD records, TFDV/TensorBoard files, eval predictions.

``gather_report(registry, name)`` returns a ``ReportData``: plain values, TFDV protos and numpy
arrays, no HTML. ``registry.report_render`` turns it into the page (and a web console can draw
the same figures from it). TensorFlow is imported lazily, only to read TensorBoard files and to
score the eval split.
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import os
from typing import Any

from ml_metadata.metadata_store import metadata_store

from contracts import mlmd as keys
from contracts.dictionary import read_model_dictionary
from contracts.examples import IMAGE_HEIGHT, IMAGE_KEY, IMAGE_WIDTH, LABEL_KEY
from contracts.signatures import (
    DICTIONARY_RELPATH,
    INPUT_EXAMPLES,
    OUTPUT_PROBABILITIES,
    SAVED_MODEL_SUBDIR,
    SERVING_EXAMPLES,
)
from metastore import pipeline_models, pipeline_runs
from metastore.errors import InputError
from metastore.store import Store, prop

MAX_EVAL_EXAMPLES = 20_000       # predictions for the confusion matrix are computed on at most this

Curves = dict[str, dict[str, list[tuple[int, float]]]]  # run -> tag -> [(step, value)]


@dataclasses.dataclass
class RunArtifacts:
    """What one pipeline run produced that the report reads."""

    model: Any
    candidate: pipeline_models.Candidate
    statistics: Any = None
    anomalies: Any = None
    examples: Any = None
    schema: Any = None


@dataclasses.dataclass
class Predictions:
    labels: Any            # int64 [n]
    predicted: Any         # int64 [n]
    images: Any            # uint8 [n, height, width]
    num_outputs: int = 0   # probabilities per example (the model's class count)


@dataclasses.dataclass
class PreviousModel:
    """The newest blessed model trained before the reported one."""

    model_id: int
    pipeline_run: str
    pushed_dir: str
    evaluation: dict[str, Any]


@dataclasses.dataclass
class ReportData:
    """Everything the report shows about one pipeline model's newest trained model."""

    name: str
    model_id: int
    model_uri: str
    pipeline_run: str
    blessed: bool | None
    pushed_dir: str
    train_examples: Any
    eval_examples: Any
    train_seconds: float | None
    hparams: dict[str, Any]
    class_names: list[str]
    evaluation: dict[str, Any]                 # the Evaluator's {"overall": .., "per_label": ..}
    generated: str                             # local time the data was gathered
    statistics: dict[str, Any] | None = None   # split -> TFDV DatasetFeatureStatistics
    statistics_uri: str = ""
    anomalies: dict[str, list[tuple[str, str, str]]] | None = None
    curves: Curves = dataclasses.field(default_factory=dict)
    curves_source: str = ""
    tensorboard_dir: str = ""
    predictions: Predictions | None = None
    not_scored: str = ""                       # why there are no predictions
    previous: PreviousModel | None = None
    infra: str = ""                            # the InfraValidator's verdict ("" = not run)


def infra_verdict(cand: pipeline_models.Candidate) -> str:
    """The InfraValidator's InfraBlessing in words: served, or why not; "" when it did not run."""
    if cand.infra_blessed is None:
        return ""
    if cand.infra_blessed:
        return "yes: `serving start` loaded it and answered the eval examples"
    failure = cand.infra_failure
    log = "; ".join(failure.get("log", [])[-3:])
    return f"no: {failure.get('reason', 'see the run log')}" + (f" (server log: {log})" if log
                                                                 else "")


# ---------------------------------------------------------------------------- MLMD lookups
def _latest_before(store: Store, type_name: str, pipeline: str, before_id: int) -> Any:
    options = metadata_store.ListOptions(
        filter_query=pipeline_models.pipeline_filter(type_name, pipeline) + f" AND id < {before_id}",
        order_by=metadata_store.OrderByField.ID, is_asc=False, limit=1)
    found = store.read(lambda m: m.get_artifacts(list_options=options), f"reading {type_name}")
    return found[0] if found else None


def find_run(store: Store, name: str, model: Any) -> RunArtifacts:
    """The model's lineage plus the statistics, anomalies and eval examples of its run."""
    cand = pipeline_models.candidate(store, model)
    result = RunArtifacts(model=model, candidate=cand)
    run = pipeline_runs.run_context(store, cand.pipeline_run) if cand.pipeline_run else None
    record = pipeline_runs.read_run(store, run, name) if run is not None else None

    def newest(key: str, type_name: str) -> Any:
        found = [a for a in (record.by_key(key) if record else []) if a.type == type_name]
        if found:
            return max(found, key=lambda a: a.id)
        # Not recorded in the run (e.g. an old store): the newest one made before the model.
        return _latest_before(store, type_name, name, model.id)

    result.statistics = newest("statistics", "ExampleStatistics")
    result.anomalies = newest("anomalies", "ExampleAnomalies")
    result.examples = newest("examples", "Examples")
    result.schema = newest("schema", "Schema")
    return result


def previous_blessed(store: Store, name: str, model: Any) -> pipeline_models.Candidate | None:
    """The newest blessed model of ``name`` trained before ``model``, with its evaluation."""
    options = metadata_store.ListOptions(
        filter_query=pipeline_models.pipeline_filter("Model", name) + f" AND id < {model.id}",
        order_by=metadata_store.OrderByField.ID, is_asc=False, limit=50)
    for earlier in store.read(lambda m: m.get_artifacts(list_options=options), "reading models"):
        cand = pipeline_models.candidate(store, earlier)
        if cand.blessed:
            return cand
    return None


# ---------------------------------------------------------------------------- file readers
def _split_dirs(uri: str) -> dict[str, str]:
    return {os.path.basename(p)[len("Split-"):]: p
            for p in sorted(glob.glob(os.path.join(uri, "Split-*"))) if os.path.isdir(p)}


def read_statistics(uri: str) -> dict[str, Any]:
    """split -> DatasetFeatureStatistics (TFDV's FeatureStats.pb)."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    result: dict[str, Any] = {}
    for split, folder in _split_dirs(uri).items():
        path = os.path.join(folder, "FeatureStats.pb")
        if not os.path.exists(path):
            continue
        stats = statistics_pb2.DatasetFeatureStatisticsList()
        with open(path, "rb") as handle:
            stats.ParseFromString(handle.read())
        if stats.datasets:
            result[split] = stats.datasets[0]
    return result


def read_anomalies(uri: str) -> dict[str, list[tuple[str, str, str]]]:
    """split -> [(feature, short description, long description)] (ExampleValidator's SchemaDiff.pb)."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    result: dict[str, list[tuple[str, str, str]]] = {}
    for split, folder in _split_dirs(uri).items():
        path = next((os.path.join(folder, f) for f in ("SchemaDiff.pb", "SchemaDiffs.pb")
                     if os.path.exists(os.path.join(folder, f))), None)
        if path is None:
            continue
        anomalies = anomalies_pb2.Anomalies()
        with open(path, "rb") as handle:
            anomalies.ParseFromString(handle.read())
        rows = [(feature, info.short_description, info.description)
                for feature, info in sorted(anomalies.anomaly_info.items())]
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            rows.append(("(dataset)", info.short_description, info.description))
        result[split] = rows
    return result


def read_tensorboard(logdir: str) -> Curves:
    """run ('train'/'validation') -> tag -> [(step, value)] from Keras's TensorBoard event files."""
    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2

    curves: Curves = {}
    for path in sorted(glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"),
                                 recursive=True)):
        run = os.path.relpath(os.path.dirname(path), logdir)
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                if not value.tag.startswith("epoch_"):
                    continue
                if value.HasField("tensor"):
                    number = float(tf.make_ndarray(value.tensor))
                else:
                    number = float(value.simple_value)
                curves.setdefault(run, {}).setdefault(value.tag[len("epoch_"):], []).append(
                    (int(event.step), number))
    for tags in curves.values():
        for tag, points in tags.items():
            tags[tag] = sorted(dict(points).items())
    return curves


def history_curves(history: list[dict[str, float]]) -> Curves:
    """Fallback when the event files are gone: the per-epoch history the Trainer recorded."""
    curves: Curves = {}
    for epoch, values in enumerate(history):
        for key, value in values.items():
            run, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            curves.setdefault(run, {}).setdefault(tag, []).append((epoch, float(value)))
    return curves


def predict_eval(examples_uri: str, saved_model_dir: str,
                 limit: int = MAX_EVAL_EXAMPLES) -> Predictions:
    """Run the model's ``serving_examples`` signature over (up to ``limit``) eval examples."""
    import numpy as np
    import tensorflow as tf

    splits = _split_dirs(examples_uri)
    split = "eval" if "eval" in splits else next((s for s in splits if s != "train"), None)
    if split is None:
        raise InputError(f"the Examples artifact at {examples_uri} has no eval split to score")
    files = sorted(glob.glob(os.path.join(splits[split], "*")))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit).batch(256)
    loaded = tf.saved_model.load(saved_model_dir)
    if SERVING_EXAMPLES not in loaded.signatures:
        raise InputError(f"{saved_model_dir} has no {SERVING_EXAMPLES!r} signature; "
                         "retrain with this version of the pipeline")
    serve = loaded.signatures[SERVING_EXAMPLES]
    labels: list[Any] = []
    predicted: list[Any] = []
    images: list[Any] = []
    num_outputs = 0
    for batch in dataset:
        probabilities = serve(**{INPUT_EXAMPLES: batch})[OUTPUT_PROBABILITIES].numpy()
        num_outputs = int(probabilities.shape[-1])
        predicted.append(np.argmax(probabilities, axis=1))
        for record in batch.numpy():
            example = tf.train.Example.FromString(record)
            feats = example.features.feature
            labels.append(int(feats[LABEL_KEY].int64_list.value[0]))
            pixels = np.asarray(feats[IMAGE_KEY].int64_list.value, dtype=np.uint8)
            images.append(pixels.reshape(IMAGE_HEIGHT, IMAGE_WIDTH))
    if not labels:
        raise InputError(f"the eval split at {splits[split]} holds no examples")
    return Predictions(labels=np.asarray(labels), predicted=np.concatenate(predicted),
                       images=np.stack(images), num_outputs=num_outputs)


# ---------------------------------------------------------------------------- gathering
def class_names_of(recorded: list[str], saved_model_dir: str, predictions: Predictions | None,
                   evaluation: dict[str, Any]) -> list[str]:
    """The model's class names: MLMD's record, else its dict.tsv, else indices for its outputs."""
    if recorded:
        return [str(n) for n in recorded]
    if os.path.isfile(os.path.join(saved_model_dir, DICTIONARY_RELPATH)):
        return read_model_dictionary(saved_model_dir)
    count = predictions.num_outputs if predictions is not None else 0
    labels = [int(k) for k in (evaluation.get("per_label") or {}) if str(k).isdigit()]
    count = count or (max(labels) + 1 if labels else 0)
    return [str(i) for i in range(count)]


def _quiet() -> None:
    """TensorFlow's import chatter and Python-version warnings would bury the one-line result."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


def gather_report(registry: Any, name: str) -> ReportData:
    """Everything the report on pipeline model ``name`` (its newest trained model) shows."""
    _quiet()
    summary = registry.summary(name)
    if summary.source != "pipeline":
        raise InputError(f"model {name!r} was imported, not trained by the pipeline; reports need "
                         "the pipeline's records (statistics, evaluation, TensorBoard logs)")
    model_id = summary.lineage.get("model_artifact_id")
    if not model_id:
        raise InputError(f"model {name!r} has no trained model yet; run the pipeline first")
    store = registry.store
    model = store.read(lambda m: m.get_artifacts_by_id([model_id]), "reading the model")[0]
    run = find_run(store, name, model)
    facts = pipeline_models.model_facts(model)
    data = ReportData(
        name=name, model_id=int(model.id), model_uri=model.uri,
        pipeline_run=run.candidate.pipeline_run, blessed=run.candidate.blessed,
        pushed_dir=run.candidate.pushed_dir, train_examples=facts["train_examples"],
        eval_examples=facts["eval_examples"], train_seconds=facts["train_seconds"],
        hparams=facts["hparams"], class_names=[], evaluation=run.candidate.evaluation or {},
        generated=datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"))
    data.infra = infra_verdict(run.candidate)
    if run.statistics is not None:
        data.statistics = read_statistics(run.statistics.uri)
        data.statistics_uri = run.statistics.uri
    if run.anomalies is not None:
        data.anomalies = read_anomalies(run.anomalies.uri)

    data.tensorboard_dir = str(prop(model, keys.TENSORBOARD_DIR, "") or "")
    if data.tensorboard_dir and os.path.isdir(data.tensorboard_dir):
        data.curves = read_tensorboard(data.tensorboard_dir)
    data.curves_source = f"TensorBoard logs in {data.tensorboard_dir}"
    if not data.curves and facts["history"]:
        data.curves = history_curves(facts["history"])
        data.curves_source = "the Trainer's recorded history"

    previous = previous_blessed(store, name, model)
    if previous is not None:
        data.previous = PreviousModel(previous.model_id, previous.pipeline_run,
                                      previous.pushed_dir, previous.evaluation or {})
    saved_model_dir = os.path.join(model.uri, SAVED_MODEL_SUBDIR)
    if run.examples is not None and os.path.isdir(saved_model_dir):
        data.predictions = predict_eval(run.examples.uri, saved_model_dir)
    else:
        data.not_scored = ("eval examples" if run.examples is None
                           else f"SavedModel at {saved_model_dir}")
    data.class_names = class_names_of(facts["class_names"], saved_model_dir, data.predictions,
                                      data.evaluation)
    return data
