"""``mlmodel eval`` and ``mlmodel predict``: the IRIS ``eval``/``predict`` steps, without a server.

Both read DATA with the pipeline's readers (``datasources/offline.py``), load only the chosen
version, and run it with Beam's RunInference (``registry/offline_inference.py``); TensorFlow and
Beam are imported only after the arguments, the model and the data have been checked.
Added to the ``mlmodel`` group, when one of them runs, by the table in ``registry/cli/__init__.py``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from typing import Any

import click

from metastore.errors import InputError
from registry import render
from registry.cliutil import (
    acting_user,
    command,
    common_options,
    fail_on_errors,
    settings_registry,
    user_option,
)

EVAL_EPILOG = """\
  mlmodel eval mnist data/digits                   (the current version; 3 x 80% samples)
  mlmodel eval mnist ~/mnist_png --split eval --label stable
  mlmodel eval mnist ~/idx rate=0.5 repeat=5 --output json
  mlmodel eval mnist ~/idx -- --runner=DirectRunner --direct_num_workers=2
"""
PREDICT_EPILOG = """\
  mlmodel predict mnist data/digits/3              (a table: input, label, tag, prediction, ...)
  mlmodel predict mnist ~/new_images --output csv --out predictions.csv
  mlmodel predict mnist ~/idx --version 2 --output json --limit 100
  mlmodel predict mnist ~/idx -- --runner=DirectRunner --direct_num_workers=2
"""
TABLE_ROWS_RICH = 500  # more rows than this print as plain aligned text (fast)


def _model_options(fn: Any) -> Any:
    fn = click.option("--label", default=None, help="The deployed version this label points at.")(fn)
    fn = click.option("--version", type=click.IntRange(1), default=None,
                      help="A deployed version (default: the current one; a model never "
                           "deployed uses its newest pushed or imported files).")(fn)
    fn = click.option("--split", type=click.Choice(["all", "train", "eval"]), default="all",
                      show_default=True,
                      help="Which examples of DATA: its train or eval split (as the pipeline "
                           "splits it), or all.")(fn)
    return fn


def _finite(value: float, flag: str) -> float:
    """click's FloatRange lets NaN through (every comparison with it is False)."""
    if value != value:
        raise click.BadParameter(f"{value} is not a number; give a share in (0, 1]",
                                 param_hint=flag)
    return value


def _chosen(reg: Any, name: str, version: int | None, label: str | None) -> tuple[Any, ...]:
    if version is not None and label is not None:
        raise click.UsageError("give --version or --label, not both")
    from contracts.dictionary import read_model_dictionary

    path, picked, artifact = reg.model_files(name, version, label)
    return path, picked, artifact, read_model_dictionary(path)


def _read(data: str, class_names: list[str], split: str, limit: int | None,
          allow_unlabelled: bool) -> Any:
    from datasources.offline import read_offline
    from datasources.readers import DataError

    try:
        return read_offline(data, class_names, split, limit, allow_unlabelled=allow_unlabelled)
    except DataError as exc:
        raise InputError(f"{exc}") from None


def _infer(path: str, pixels: Any, beam_args: tuple[str, ...]) -> Any:
    from registry.offline_inference import run_inference

    render.note(f"running {len(pixels):,} examples through {path} with Beam RunInference "
                f"({' '.join(beam_args) or '--runner=DirectRunner'})")
    return run_inference(path, pixels, beam_args)


# ----------------------------------------------------------------------------------------- eval
@command("eval", EVAL_EPILOG)
@click.argument("name")
@click.argument("data")
@_model_options
@click.option("--rate", type=click.FloatRange(0, 1, min_open=True), default=0.8,
              show_default=True, callback=lambda _c, _p, v: _finite(v, "--rate"),
              help="Share of the examples each repetition scores.")
@click.option("--repeat", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Repetitions, each on its own random sample.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the samples: the same seed draws the same samples.")
@click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
@user_option
@common_options
@click.pass_context
@fail_on_errors
def eval_cmd(ctx: click.Context, name: str, data: str, version: int | None, label: str | None,
             split: str, rate: float, repeat: int, seed: int, beam_args: tuple[str, ...],
             user: str | None, **_: Any) -> None:
    """Evaluate a version of NAME on the labelled examples in DATA (anything the pipeline's
    --data reads): a table of repetitions (no, losses, metrics), then accuracy per class.

    The result is stored in ML Metadata (an evaluation linked to the version and the data, an
    `eval` entry in the history) and shown by `mlmodel summary` under cross_validation. Beam
    arguments go after `--`.
    """
    started = time.perf_counter()
    reg, output = settings_registry(ctx)
    path, picked, artifact, class_names = _chosen(reg, name, version, label)
    examples = _read(data, class_names, split, None, allow_unlabelled=False)
    from registry.offline_eval import evaluate

    probabilities = _infer(path, examples.pixels, beam_args)
    result = evaluate(probabilities, examples.labels, class_names, rate, repeat, seed)
    result.update(model=name, version=picked, data=data, split=split, layout=examples.description,
                  seconds=round(time.perf_counter() - started, 2))
    result["evaluation_artifact_id"] = reg.record_evaluation(
        name, picked, artifact, data, examples.description, result, acting_user(ctx, user))
    if output == "json":
        render.print_json(result)
        return
    render.print_table(["no", "losses", "metrics"], [
        [r["no"], f"{r['losses']:.4f}", f"accuracy {r['metrics']['accuracy']:.4f}"]
        for r in result["repetitions"]],
        title=f"{name} version {picked or '(newest files)'} on {data}")
    render.print_table(["class", "name", "examples", "accuracy"], [
        [c["index"], class_name, c["examples"], f"{c['accuracy']:.4f}"]
        for class_name, c in result["per_class"].items()])
    render.note(f"overall: accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f} on "
                f"{result['examples']:,} examples ({examples.description}); recorded as "
                f"evaluation {result['evaluation_artifact_id']}")


# -------------------------------------------------------------------------------------- predict
def _short(vector: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in vector[:3]) + ("...]" if len(vector) > 3 else "]")


def _rows(examples: Any, probabilities: Any, class_names: list[str]) -> list[dict[str, Any]]:
    import numpy as np

    top = np.argmax(probabilities, axis=1)
    rows = []
    for i, source in enumerate(examples.inputs):
        label = int(examples.labels[i])
        rows.append({
            "input": source, "label": None if label < 0 else label,
            "tag": class_names[label] if 0 <= label < len(class_names) else None,
            "prediction": probabilities[i].tolist(), "predicted": int(top[i]),
            "probability": float(probabilities[i][top[i]]),
            "interpreted": class_names[top[i]] if top[i] < len(class_names) else str(top[i]),
        })
    return rows


def _csv(rows: list[dict[str, Any]], class_names: list[str], probabilities: Any) -> str:
    """One row per example: the text columns through ``csv`` (quoting), the probabilities
    formatted by numpy (``np.savetxt``: several times faster than per-value f-strings)."""
    import numpy as np

    numbers = io.StringIO()
    np.savetxt(numbers, probabilities, fmt="%.6g", delimiter=",")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="")
    lines = []
    for r, values in zip(rows, numbers.getvalue().splitlines(), strict=True):
        writer.writerow([r["input"], "" if r["label"] is None else r["label"], r["tag"] or "",
                         r["interpreted"], f"{r['probability']:.6g}"])
        lines.append(f"{out.getvalue()},{values}")
        out.seek(0)
        out.truncate()
    writer.writerow(["input", "label", "tag", "interpreted", "probability",
                     *[f"p_{name}" for name in class_names]])
    return "\n".join([out.getvalue(), *lines]) + "\n"


def _table(rows: list[dict[str, Any]], title: str) -> None:
    headers = ["label", "tag", "input", "prediction", "interpreted"]
    cells = [["" if r["label"] is None else r["label"], r["tag"] or "", r["input"],
              _short(r["prediction"]), r["interpreted"]] for r in rows]
    if len(cells) <= TABLE_ROWS_RICH:
        render.print_table(headers, cells, title=title)
        return
    widths = [max(len(h), *(len(str(c[i])) for c in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
              for row in cells]
    sys.stdout.write("\n".join(lines) + "\n")


def _write_atomically(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


@command("predict", PREDICT_EPILOG)
@click.argument("name")
@click.argument("data")
@_model_options
@click.option("--output", "-o", "output_format", type=click.Choice(["table", "json", "csv"]),
              default=None, help="table (default), json or csv (json and csv carry every "
                                 "probability).")
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False),
              help="Write the output to this file (atomically) instead of the terminal.")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Predict at most the first N examples.")
@click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
@click.option("--metadata", default=None, metavar="PATH|URI", help="MLMD database (see mlmodel --help).")
@click.option("--serving-dir", default=None, metavar="DIR", help="Serving directory.")
@click.pass_context
@fail_on_errors
def predict_cmd(ctx: click.Context, name: str, data: str, version: int | None, label: str | None,
                split: str, output_format: str | None, out_file: str | None, limit: int | None,
                beam_args: tuple[str, ...], **_: Any) -> None:
    """Predict every example in DATA with a version of NAME, offline (Beam RunInference, no
    server): label (when known), tag, input, prediction, interpreted.

    DATA is anything the pipeline's --data reads, or images without labels (a file or a folder
    of image files). Beam arguments go after `--`.
    """
    reg, group_output = settings_registry(ctx)
    output = output_format or group_output
    if out_file and output not in ("json", "csv"):  # checked before TensorFlow loads
        raise click.UsageError("--out needs --output json or csv")
    path, picked, _, class_names = _chosen(reg, name, version, label)
    examples = _read(data, class_names, split, limit, allow_unlabelled=True)
    probabilities = _infer(path, examples.pixels, beam_args)
    rows = _rows(examples, probabilities, class_names)
    labelled = [r for r in rows if r["label"] is not None]
    accuracy = (sum(r["label"] == r["predicted"] for r in labelled) / len(labelled)
                if labelled else None)
    if output == "json":
        text = json.dumps({"model": name, "version": picked, "data": data,
                           "class_names": class_names, "accuracy": accuracy,
                           "predictions": rows}) + "\n"
    elif output == "csv":
        text = _csv(rows, class_names, probabilities)
    else:
        text = ""
    if out_file:
        _write_atomically(out_file, text)
        render.note(f"wrote {len(rows):,} predictions to {out_file}")
    elif text:
        sys.stdout.write(text)
    else:
        _table(rows, f"{name} version {picked or '(newest files)'}")
    if accuracy is not None:
        render.note(f"accuracy: {accuracy:.4f} on {len(labelled):,} labelled examples")
