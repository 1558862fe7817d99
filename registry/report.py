"""``mlmodel report NAME``: one self-contained HTML page about a pipeline model's newest run.

Sections: data statistics and schema anomalies (TFDV's StatisticsGen/ExampleValidator outputs),
training curves (the Trainer's TensorBoard logs), per-class accuracy and a confusion matrix (the
model's ``serving_examples`` signature over the eval split), a grid of misclassified eval images,
and the comparison with the previous blessed model (ModelEvaluation metrics from MLMD).

Plots are matplotlib (Agg) PNGs embedded as base64 ``data:`` URIs, so the file can be mailed or
opened offline. TensorFlow and matplotlib are imported lazily, only by ``build_report``: the other
``mlmodel`` commands stay free of them. The file is written to a temporary name and renamed.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import glob
import html
import io
import json
import os
import tempfile
from typing import Any

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from registry import pipeline_models
from registry.errors import InputError
from registry.store import Store, prop

MAX_EVAL_EXAMPLES = 20_000       # predictions for the confusion matrix are computed on at most this
MISCLASSIFIED_GRID = 36          # images in the misclassified grid (6 x 6)
ACCURACY = "sparse_categorical_accuracy"


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
    images: Any            # uint8 [n, 28, 28]


# ---------------------------------------------------------------------------- MLMD lookups
def _run_outputs(store: Store, run_name: str) -> dict[str, list[Any]]:
    """OUTPUT artifacts of every execution in pipeline run ``run_name``, by output key."""
    ctx = store.read(lambda m: m.get_context_by_type_and_name(
        pipeline_models.PIPELINE_RUN_CONTEXT, run_name), "reading the pipeline run")
    if ctx is None:
        return {}
    executions = store.read(lambda m: m.get_executions_by_context(ctx.id), "reading executions")
    ids = [e.id for e in executions]
    if not ids:
        return {}
    events = store.read(lambda m: m.get_events_by_execution_ids(ids), "reading events")
    outputs = [e for e in events if e.type == pb.Event.OUTPUT]
    artifacts = {a.id: a for a in store.read(
        lambda m: m.get_artifacts_by_id(sorted({e.artifact_id for e in outputs})),
        "reading artifacts")} if outputs else {}
    by_key: dict[str, list[Any]] = {}
    for event in outputs:
        if event.artifact_id in artifacts:
            by_key.setdefault(pipeline_models._key(event), []).append(artifacts[event.artifact_id])
    return by_key


def _latest_before(store: Store, type_name: str, pipeline: str, before_id: int) -> Any:
    options = metadata_store.ListOptions(
        filter_query=pipeline_models._filter(type_name, pipeline) + f" AND id < {before_id}",
        order_by=metadata_store.OrderByField.ID, is_asc=False, limit=1)
    found = store.read(lambda m: m.get_artifacts(list_options=options), f"reading {type_name}")
    return found[0] if found else None


def find_run(store: Store, name: str, model: Any) -> RunArtifacts:
    """The model's lineage plus the statistics, anomalies and eval examples of its run."""
    cand = pipeline_models.candidate(store, model)
    result = RunArtifacts(model=model, candidate=cand)
    outputs = _run_outputs(store, cand.pipeline_run) if cand.pipeline_run else {}

    def newest(key: str, type_name: str) -> Any:
        found = [a for a in outputs.get(key, []) if a.type == type_name]
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
        filter_query=pipeline_models._filter("Model", name) + f" AND id < {model.id}",
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


def read_tensorboard(logdir: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """run ('train'/'validation') -> tag -> [(step, value)] from Keras's TensorBoard event files."""
    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2

    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
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


def _history_curves(history: list[dict[str, float]]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Fallback when the event files are gone: the per-epoch history the Trainer recorded."""
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
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

    import modules  # noqa: F401  (Keras 2, before the SavedModel is loaded)
    from modules import features

    splits = _split_dirs(examples_uri)
    split = "eval" if "eval" in splits else next((s for s in splits if s != "train"), None)
    if split is None:
        raise InputError(f"the Examples artifact at {examples_uri} has no eval split to score")
    files = sorted(glob.glob(os.path.join(splits[split], "*")))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit).batch(256)
    loaded = tf.saved_model.load(saved_model_dir)
    if features.SERVING_EXAMPLES not in loaded.signatures:
        raise InputError(f"{saved_model_dir} has no {features.SERVING_EXAMPLES!r} signature; "
                         "retrain with this version of the pipeline")
    serve = loaded.signatures[features.SERVING_EXAMPLES]
    labels: list[Any] = []
    predicted: list[Any] = []
    images: list[Any] = []
    for batch in dataset:
        probabilities = serve(**{features.INPUT_EXAMPLES: batch})[features.OUTPUT_PROBABILITIES]
        predicted.append(np.argmax(probabilities.numpy(), axis=1))
        for record in batch.numpy():
            example = tf.train.Example.FromString(record)
            feats = example.features.feature
            labels.append(int(feats[features.LABEL_KEY].int64_list.value[0]))
            pixels = np.asarray(feats[features.IMAGE_KEY].int64_list.value, dtype=np.uint8)
            images.append(pixels.reshape(features.IMAGE_HEIGHT, features.IMAGE_WIDTH))
    if not labels:
        raise InputError(f"the eval split at {splits[split]} holds no examples")
    return Predictions(labels=np.asarray(labels), predicted=np.concatenate(predicted),
                       images=np.stack(images))


# ---------------------------------------------------------------------------- figures
def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def figure_class_counts(stats: dict[str, Any], class_names: list[str]) -> str | None:
    """Bar chart of examples per class and split, from the label feature's TFDV histogram."""
    import matplotlib.pyplot as plt
    import numpy as np

    counts: dict[str, list[float]] = {}
    for split, dataset in stats.items():
        feature = next((f for f in dataset.features if f.path.step[-1:] == ["label"]), None)
        if feature is None or not feature.HasField("num_stats"):
            continue
        values = [0.0] * len(class_names)
        for histogram in feature.num_stats.histograms:
            if histogram.type != histogram.STANDARD:
                continue
            last = len(histogram.buckets) - 1
            for i, bucket in enumerate(histogram.buckets):
                # The integer labels inside the bucket (the last bucket includes its high edge).
                inside = [k for k in range(len(values)) if bucket.low_value <= k < bucket.high_value
                          or (i == last and k == bucket.high_value)]
                for k in inside:
                    values[k] += bucket.sample_count / len(inside)
        counts[split] = values
    if not counts:
        return None
    fig, ax = plt.subplots(figsize=(8, 3))
    width = 0.8 / len(counts)
    x = np.arange(len(class_names))
    for i, (split, values) in enumerate(sorted(counts.items(), reverse=True)):
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=split)
    ax.set_xticks(x, class_names, rotation=30)
    ax.set_ylabel("examples")
    ax.set_title("Examples per class (TFDV label histogram)")
    ax.set_ylim(0, max(max(v) for v in counts.values()) * 1.3 or 1)
    ax.legend(loc="upper right", ncol=len(counts))
    return _png(fig)


def figure_curves(curves: dict[str, dict[str, list[tuple[int, float]]]]) -> str | None:
    import matplotlib.pyplot as plt

    tags = sorted({tag for run in curves.values() for tag in run
                   if tag in ("loss", ACCURACY, "accuracy")})
    if not tags:
        return None
    fig, axes = plt.subplots(1, len(tags), figsize=(5 * len(tags), 3.2), squeeze=False)
    for ax, tag in zip(axes[0], tags, strict=True):
        for run, values in sorted(curves.items()):
            if tag in values:
                steps, numbers = zip(*values[tag], strict=True)
                ax.plot([s + 1 for s in steps], numbers, marker="o", label=run)
        ax.set_xlabel("epoch")
        ax.set_title(tag.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend()
    return _png(fig)


def figure_per_class(per_class: list[float], class_names: list[str],
                     baseline: list[float] | None = None) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 3))
    x = np.arange(len(class_names))
    if baseline is None:
        ax.bar(x, per_class, color="tab:blue", label="this model")
    else:
        ax.bar(x - 0.2, baseline, 0.4, color="tab:gray", label="previous blessed")
        ax.bar(x + 0.2, per_class, 0.4, color="tab:blue", label="this model")
    ax.set_xticks(x, class_names, rotation=30)
    ax.set_ylim(0, 1.3)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper right", ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def figure_confusion(matrix: Any, class_names: list[str]) -> str:
    import matplotlib.pyplot as plt

    size = max(3.5, 0.4 * len(class_names) + 1.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    shown = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = matrix.max() or 1
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if matrix[i, j]:
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] > peak / 2 else "black")
    fig.colorbar(shown, ax=ax, fraction=0.046)
    return _png(fig)


def figure_misclassified(pred: Predictions, class_names: list[str]) -> str | None:
    import matplotlib.pyplot as plt
    import numpy as np

    wrong = np.flatnonzero(pred.labels != pred.predicted)[:MISCLASSIFIED_GRID]
    if not len(wrong):
        return None
    columns = min(6, len(wrong))
    rows = (len(wrong) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(1.7 * columns, 2.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, wrong, strict=False):
        ax.imshow(pred.images[index], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"true {_name(class_names, pred.labels[index])}\n"
                     f"pred {_name(class_names, pred.predicted[index])}", fontsize=8, color="tab:red")
    return _png(fig)


def _name(class_names: list[str], index: int) -> str:
    return class_names[index] if 0 <= index < len(class_names) else str(index)


# ---------------------------------------------------------------------------- HTML
CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;
color:#222;padding:0 16px}h1{margin-bottom:4px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;
margin-top:32px}table{border-collapse:collapse;margin:8px 0;font-size:14px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}.meta td{text-align:left}.ok{color:#1a7f37}
.bad{color:#c62828;font-weight:bold}img{max-width:100%;display:block;margin:8px 0}
.note{color:#666;font-size:13px}
"""


def _table(headers: list[str] | None, rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers or [])
    head = f"<tr>{head}</tr>" if head else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}">{head}{body}</table>'


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _stats_table(stats: dict[str, Any]) -> str:
    rows: list[list[Any]] = []
    for split, dataset in sorted(stats.items(), reverse=True):
        for feature in dataset.features:
            name = ".".join(feature.path.step) or feature.name
            if feature.HasField("num_stats"):
                num = feature.num_stats
                common = num.common_stats
                rows.append([html.escape(split), html.escape(name),
                             f"{common.num_non_missing:,}", f"{common.num_missing:,}",
                             f"{common.avg_num_values:.1f}", _fmt(num.mean, 2), _fmt(num.std_dev, 2),
                             _fmt(num.min, 0), _fmt(num.max, 0), f"{num.num_zeros:,}"])
            else:
                rows.append([html.escape(split), html.escape(name), "", "", "", "", "", "", "", ""])
    return _table(["split", "feature", "present", "missing", "values/example", "mean", "std",
                   "min", "max", "zeros"], rows)


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>\n{body}\n</section>\n'


def _quiet() -> None:
    """TensorFlow's import chatter and Python-version warnings would bury the one-line result."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


def build_report(metadata: str | None, serving_dir: str | None, name: str) -> str:
    """The report's HTML for pipeline model ``name`` (its newest trained model)."""
    import modules  # noqa: F401  (Keras 2 and quiet TensorFlow, before TensorFlow is imported)

    _quiet()
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from registry.api import open_registry

    registry = open_registry(metadata, serving_dir)
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
    class_names = list(facts["class_names"]) or [str(i) for i in range(10)]
    evaluation = run.candidate.evaluation or {}
    overall = evaluation.get("overall", {})
    sections: list[str] = []

    # -- header
    blessed = run.candidate.blessed
    blessed_html = {True: '<span class="ok">yes</span>', False: '<span class="bad">no</span>',
                    None: "n/a"}[blessed]
    meta_rows = [
        ["model", html.escape(name)],
        ["model artifact", f"{model.id} &nbsp; <code>{html.escape(model.uri)}</code>"],
        ["pipeline run", html.escape(run.candidate.pipeline_run or "n/a")],
        ["blessed", blessed_html],
        ["pushed to", html.escape(run.candidate.pushed_dir or "not pushed")],
        ["eval accuracy", _fmt(overall.get(ACCURACY))],
        ["train / eval examples", f"{facts['train_examples']} / {facts['eval_examples']}"],
        ["training time", _fmt(facts["train_seconds"], 1) + " s"],
        ["hyperparameters", html.escape(json.dumps(facts["hparams"], sort_keys=True))],
        ["generated", datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")],
    ]
    header = (f"<h1>Model report: {html.escape(name)}</h1>"
              + _table(None, meta_rows, cls="meta"))

    # -- data statistics and anomalies
    body = ""
    if run.statistics is not None:
        stats = read_statistics(run.statistics.uri)
        body += "<p>" + ", ".join(f"{html.escape(s)}: <b>{d.num_examples:,}</b> examples"
                                  for s, d in sorted(stats.items(), reverse=True)) + "</p>"
        chart = figure_class_counts(stats, class_names)
        if chart:
            body += _img(chart, "examples per class")
        body += _stats_table(stats)
        body += f'<p class="note">from {html.escape(run.statistics.uri)}</p>'
    else:
        body += "<p>No StatisticsGen output was found for this run.</p>"
    sections.append(_section("data", "Data statistics", body))
    body = ""
    if run.anomalies is not None:
        anomalies = read_anomalies(run.anomalies.uri)
        rows = [[html.escape(split), html.escape(f), f'<span class="bad">{html.escape(s)}</span>',
                 html.escape(d)] for split, items in sorted(anomalies.items()) for f, s, d in items]
        if rows:
            body += _table(["split", "feature", "anomaly", "detail"], rows)
        else:
            body += ('<p class="ok">No anomalies: every split matches the schema '
                     f"({', '.join(sorted(anomalies)) or 'no split was validated'}).</p>")
    else:
        body += "<p>No ExampleValidator output was found for this run.</p>"
    sections.append(_section("anomalies", "Schema anomalies", body))

    # -- training curves
    tensorboard_dir = str(prop(model, "tensorboard_dir", "") or "")
    curves = read_tensorboard(tensorboard_dir) if tensorboard_dir and os.path.isdir(
        tensorboard_dir) else {}
    source = f"TensorBoard logs in {tensorboard_dir}"
    if not curves and facts["history"]:
        curves, source = _history_curves(facts["history"]), "the Trainer's recorded history"
    chart = figure_curves(curves)
    body = (_img(chart, "training curves") + f'<p class="note">from {html.escape(source)}; '
            f"<code>tensorboard --logdir {html.escape(tensorboard_dir)}</code></p>"
            if chart else "<p>No training curves were recorded.</p>")
    sections.append(_section("training", "Training curves", body))

    # -- predictions: per-class accuracy, confusion matrix, misclassified images
    previous = previous_blessed(store, name, model)
    previous_per_label = (previous.evaluation.get("per_label", {}) if previous else {}) or {}
    saved_model_dir = os.path.join(model.uri, "Format-Serving")
    if run.examples is not None and os.path.isdir(saved_model_dir):
        pred = predict_eval(run.examples.uri, saved_model_dir)
        n = len(class_names)
        matrix = np.zeros((n, n), dtype=np.int64)
        for true, guess in zip(pred.labels, pred.predicted, strict=True):
            if 0 <= true < n and 0 <= guess < n:
                matrix[true, guess] += 1
        totals = matrix.sum(axis=1)
        per_class = [float(matrix[i, i] / totals[i]) if totals[i] else 0.0 for i in range(n)]
        baseline = None
        if previous_per_label:
            baseline = [float((previous_per_label.get(str(i)) or {}).get(ACCURACY) or 0.0)
                        for i in range(n)]
        accuracy = float((pred.labels == pred.predicted).mean())
        rows = [[html.escape(f"{i} {class_names[i]}"), f"{int(totals[i])}",
                 f"{int(matrix[i, i])}", _fmt(per_class[i]),
                 _fmt(baseline[i]) if baseline else "n/a"] for i in range(n)]
        body = (f"<p>{len(pred.labels):,} eval examples scored with the model's "
                f"<code>serving_examples</code> signature: accuracy <b>{accuracy:.4f}</b>.</p>"
                + _img(figure_per_class(per_class, class_names, baseline), "per-class accuracy")
                + _table(["class", "examples", "correct", "accuracy", "previous blessed"], rows))
        sections.append(_section("per-class", "Per-class accuracy", body))
        sections.append(_section("confusion", "Confusion matrix",
                                 _img(figure_confusion(matrix, class_names), "confusion matrix")))
        grid = figure_misclassified(pred, class_names)
        wrong = int((pred.labels != pred.predicted).sum())
        body = (f"<p>{wrong} of {len(pred.labels)} eval images are misclassified"
                + (f"; the first {min(wrong, MISCLASSIFIED_GRID)} are shown.</p>" if wrong else
                   ".</p>") + (_img(grid, "misclassified images") if grid else ""))
        sections.append(_section("misclassified", "Misclassified images", body))
    else:
        missing = "eval examples" if run.examples is None else f"SavedModel at {saved_model_dir}"
        note = f"<p>Cannot score the model: no {html.escape(missing)}.</p>"
        for anchor, title in (("per-class", "Per-class accuracy"),
                              ("confusion", "Confusion matrix"),
                              ("misclassified", "Misclassified images")):
            sections.append(_section(anchor, title, note))

    # -- comparison with the previous blessed model
    if previous is not None:
        before = previous.evaluation.get("overall", {}) or {}
        keys = sorted((k for k in {*overall, *before}
                       if not k.endswith(("_diff", "_baseline"))),
                      key=lambda k: (k != ACCURACY, k))
        rows = []
        for key in keys:
            now, then = overall.get(key), before.get(key)
            delta = (f"{now - then:+.4f}" if isinstance(now, (int, float))
                     and isinstance(then, (int, float)) else "")
            rows.append([html.escape(key), _fmt(then), _fmt(now), delta])
        labels = sorted({*evaluation.get("per_label", {}), *previous_per_label},
                        key=lambda k: (len(k), k))
        for label in labels:
            now = (evaluation.get("per_label", {}).get(label) or {}).get(ACCURACY)
            then = (previous_per_label.get(label) or {}).get(ACCURACY)
            delta = f"{now - then:+.4f}" if now is not None and then is not None else ""
            label_name = _name(class_names, int(label)) if label.isdigit() else label
            rows.append([html.escape(f"accuracy, label {label} ({label_name})"), _fmt(then),
                         _fmt(now), delta])
        body = (f"<p>Previous blessed model: artifact {previous.model_id} from run "
                f"{html.escape(previous.pipeline_run)}"
                + (f", pushed to <code>{html.escape(previous.pushed_dir)}</code>"
                   if previous.pushed_dir else "") + ". Metrics from the Evaluator (TFMA).</p>"
                + _table(["metric", f"previous ({previous.model_id})", f"this ({model.id})",
                          "change"], rows))
    else:
        body = "<p>There is no earlier blessed model of this name to compare with.</p>"
    sections.append(_section("comparison", "Comparison with the previous blessed model", body))

    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Model report: {html.escape(name)}</title><style>{CSS}</style></head><body>\n"
            + header + "".join(sections) + "</body></html>\n")


def write_report(metadata: str | None, serving_dir: str | None, name: str, out: str) -> str:
    """Build the report and write it to ``out`` atomically; returns the absolute path."""
    target = os.path.abspath(out)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise InputError(f"--out {out}: folder {folder} does not exist; create it or pick another")
    text = build_report(metadata, serving_dir, name)
    handle, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp",
                                   dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target
