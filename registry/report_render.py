"""Draw ``mlmodel report``'s page from a ``ReportData``: matplotlib figures and the HTML around them.

No MLMD and no TensorFlow here: only the gathered data (``registry.report_data``), numpy and
matplotlib (Agg). Figures are PNGs returned as base64 text, embedded as ``data:`` URIs so the page
can be mailed or opened offline; the figure functions work for any number of classes.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

from contracts.examples import LABEL_KEY
from contracts.mlmd import ACCURACY_METRIC as ACCURACY
from contracts.signatures import SERVING_EXAMPLES
from registry.report_data import Curves, Predictions, ReportData

MISCLASSIFIED_GRID = 36          # images in the misclassified grid (6 x 6)


# ---------------------------------------------------------------------------- figures
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def figure_class_counts(stats: dict[str, Any], class_names: list[str]) -> str | None:
    """Bar chart of examples per class and split, from the label feature's TFDV histogram."""
    import numpy as np

    plt = _pyplot()
    counts: dict[str, list[float]] = {}
    for split, dataset in stats.items():
        feature = next((f for f in dataset.features if f.path.step[-1:] == [LABEL_KEY]), None)
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
    ax.set_ylim(0, max(max(v, default=0.0) for v in counts.values()) * 1.3 or 1)
    ax.legend(loc="upper right", ncol=len(counts))
    return _png(fig)


def figure_curves(curves: Curves) -> str | None:
    plt = _pyplot()
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
    import numpy as np

    plt = _pyplot()
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
    plt = _pyplot()
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
    import numpy as np

    plt = _pyplot()
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
        ax.set_title(f"true {class_name(class_names, pred.labels[index])}\n"
                     f"pred {class_name(class_names, pred.predicted[index])}", fontsize=8,
                     color="tab:red")
    return _png(fig)


def class_name(class_names: list[str], index: int) -> str:
    return class_names[index] if 0 <= index < len(class_names) else str(index)


def confusion_matrix(pred: Predictions, count: int) -> Any:
    """``count`` x ``count`` int64 counts (true row, predicted column); others are dropped."""
    import numpy as np

    matrix = np.zeros((count, count), dtype=np.int64)
    for true, guess in zip(pred.labels, pred.predicted, strict=True):
        if 0 <= true < count and 0 <= guess < count:
            matrix[true, guess] += 1
    return matrix


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


def _img(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


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


def render_header(data: ReportData) -> str:
    overall = data.evaluation.get("overall", {})
    blessed_html = {True: '<span class="ok">yes</span>', False: '<span class="bad">no</span>',
                    None: "n/a"}[data.blessed]
    meta_rows = [
        ["model", html.escape(data.name)],
        ["model artifact", f"{data.model_id} &nbsp; <code>{html.escape(data.model_uri)}</code>"],
        ["pipeline run", html.escape(data.pipeline_run or "n/a")],
        ["blessed", blessed_html],
        ["served (InfraValidator)", html.escape(data.infra or "not checked")],
        ["pushed to", html.escape(data.pushed_dir or "not pushed")],
        ["eval accuracy", _fmt(overall.get(ACCURACY))],
        ["train / eval examples", f"{data.train_examples} / {data.eval_examples}"],
        ["training time", _fmt(data.train_seconds, 1) + " s"],
        ["hyperparameters", html.escape(json.dumps(data.hparams, sort_keys=True))],
        ["generated", data.generated],
    ]
    return f"<h1>Model report: {html.escape(data.name)}</h1>" + _table(None, meta_rows, cls="meta")


def render_data(data: ReportData) -> str:
    """The data statistics section: example counts, examples per class, the TFDV table."""
    if data.statistics is None:
        return _section("data", "Data statistics",
                        "<p>No StatisticsGen output was found for this run.</p>")
    stats = data.statistics
    body = "<p>" + ", ".join(f"{html.escape(s)}: <b>{d.num_examples:,}</b> examples"
                             for s, d in sorted(stats.items(), reverse=True)) + "</p>"
    chart = figure_class_counts(stats, data.class_names)
    if chart:
        body += _img(chart, "examples per class")
    body += _stats_table(stats)
    body += f'<p class="note">from {html.escape(data.statistics_uri)}</p>'
    return _section("data", "Data statistics", body)


def render_anomalies(data: ReportData) -> str:
    if data.anomalies is None:
        body = "<p>No ExampleValidator output was found for this run.</p>"
        return _section("anomalies", "Schema anomalies", body)
    anomalies = data.anomalies
    rows = [[html.escape(split), html.escape(f), f'<span class="bad">{html.escape(s)}</span>',
             html.escape(d)] for split, items in sorted(anomalies.items()) for f, s, d in items]
    if rows:
        body = _table(["split", "feature", "anomaly", "detail"], rows)
    else:
        body = ('<p class="ok">No anomalies: every split matches the schema '
                f"({', '.join(sorted(anomalies)) or 'no split was validated'}).</p>")
    return _section("anomalies", "Schema anomalies", body)


def render_training(data: ReportData) -> str:
    chart = figure_curves(data.curves)
    body = (_img(chart, "training curves") + f'<p class="note">from '
            f"{html.escape(data.curves_source)}; "
            f"<code>tensorboard --logdir {html.escape(data.tensorboard_dir)}</code></p>"
            if chart else "<p>No training curves were recorded.</p>")
    return _section("training", "Training curves", body)


def _previous_per_label(data: ReportData) -> dict[str, Any]:
    return (data.previous.evaluation.get("per_label", {}) if data.previous else {}) or {}


def render_predictions(data: ReportData) -> str:
    """Per-class accuracy, the confusion matrix and misclassified images (three sections)."""
    pred = data.predictions
    if pred is None:
        note = f"<p>Cannot score the model: no {html.escape(data.not_scored)}.</p>"
        return "".join(_section(anchor, title, note) for anchor, title in (
            ("per-class", "Per-class accuracy"), ("confusion", "Confusion matrix"),
            ("misclassified", "Misclassified images")))
    class_names = data.class_names
    n = len(class_names)
    matrix = confusion_matrix(pred, n)
    totals = matrix.sum(axis=1)
    per_class = [float(matrix[i, i] / totals[i]) if totals[i] else 0.0 for i in range(n)]
    previous_per_label = _previous_per_label(data)
    baseline = None
    if previous_per_label:
        baseline = [float((previous_per_label.get(str(i)) or {}).get(ACCURACY) or 0.0)
                    for i in range(n)]
    accuracy = float((pred.labels == pred.predicted).mean())
    rows = [[html.escape(f"{i} {class_names[i]}"), f"{int(totals[i])}",
             f"{int(matrix[i, i])}", _fmt(per_class[i]),
             _fmt(baseline[i]) if baseline else "n/a"] for i in range(n)]
    body = (f"<p>{len(pred.labels):,} eval examples scored with the model's "
            f"<code>{SERVING_EXAMPLES}</code> signature: accuracy <b>{accuracy:.4f}</b>.</p>"
            + _img(figure_per_class(per_class, class_names, baseline), "per-class accuracy")
            + _table(["class", "examples", "correct", "accuracy", "previous blessed"], rows))
    out = _section("per-class", "Per-class accuracy", body)
    out += _section("confusion", "Confusion matrix",
                    _img(figure_confusion(matrix, class_names), "confusion matrix"))
    grid = figure_misclassified(pred, class_names)
    wrong = int((pred.labels != pred.predicted).sum())
    body = (f"<p>{wrong} of {len(pred.labels)} eval images are misclassified"
            + (f"; the first {min(wrong, MISCLASSIFIED_GRID)} are shown.</p>" if wrong else
               ".</p>") + (_img(grid, "misclassified images") if grid else ""))
    return out + _section("misclassified", "Misclassified images", body)


def render_comparison(data: ReportData) -> str:
    previous = data.previous
    title = "Comparison with the previous blessed model"
    if previous is None:
        return _section("comparison", title,
                        "<p>There is no earlier blessed model of this name to compare with.</p>")
    overall = data.evaluation.get("overall", {})
    before = previous.evaluation.get("overall", {}) or {}
    keys = sorted((k for k in {*overall, *before} if not k.endswith(("_diff", "_baseline"))),
                  key=lambda k: (k != ACCURACY, k))
    rows = []
    for key in keys:
        now, then = overall.get(key), before.get(key)
        delta = (f"{now - then:+.4f}" if isinstance(now, (int, float))
                 and isinstance(then, (int, float)) else "")
        rows.append([html.escape(key), _fmt(then), _fmt(now), delta])
    previous_per_label = _previous_per_label(data)
    labels = sorted({*data.evaluation.get("per_label", {}), *previous_per_label},
                    key=lambda k: (len(k), k))
    for label in labels:
        now = (data.evaluation.get("per_label", {}).get(label) or {}).get(ACCURACY)
        then = (previous_per_label.get(label) or {}).get(ACCURACY)
        delta = f"{now - then:+.4f}" if now is not None and then is not None else ""
        label_name = class_name(data.class_names, int(label)) if label.isdigit() else label
        rows.append([html.escape(f"accuracy, label {label} ({label_name})"), _fmt(then),
                     _fmt(now), delta])
    body = (f"<p>Previous blessed model: artifact {previous.model_id} from run "
            f"{html.escape(previous.pipeline_run)}"
            + (f", pushed to <code>{html.escape(previous.pushed_dir)}</code>"
               if previous.pushed_dir else "") + ". Metrics from the Evaluator (TFMA).</p>"
            + _table(["metric", f"previous ({previous.model_id})", f"this ({data.model_id})",
                      "change"], rows))
    return _section("comparison", title, body)


def render_report(data: ReportData) -> str:
    """The whole self-contained HTML page."""
    sections = (render_data(data) + render_anomalies(data) + render_training(data)
                + render_predictions(data) + render_comparison(data))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Model report: {html.escape(data.name)}</title><style>{CSS}</style></head>"
            "<body>\n" + render_header(data) + sections + "</body></html>\n")
