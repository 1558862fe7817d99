"""``mlmodel monitor`` and ``mlmodel export-captured``: after the deploy, look at what the server
saw and feed it back into training.

Added to the ``mlmodel`` group by the table in ``registry/cli/__init__.py``; TensorFlow and TFDV
are imported only once the arguments are checked (``registry.monitor_run``).

Exit codes of ``monitor``: 0 no drift, 3 (``EXIT_DRIFT``) drift, 2 bad input (unknown model,
no captured requests, a bad --threshold), 1 backend error.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from contracts import settings as contract_settings
from registry import render
from registry.cliutil import (
    acting_user,
    command,
    common_options,
    fail_on_errors,
    settings_registry,
    user_option,
)
from registry.monitor import DEFAULT_LOW_CONFIDENCE, DEFAULT_THRESHOLDS, EXIT_DRIFT

FEW_REQUESTS = 200  # below this, histogram divergences of unchanged images reach the thresholds
CAPTURE_HELP = (f"Where the server captured requests (env {contract_settings.ENV_CAPTURE_DIR}, "
                f"default {contract_settings.DEFAULT_CAPTURE_DIR}).")
MONITOR_EPILOG = """\
  mlmodel monitor mnist                          (the current version, last 24 h)
  mlmodel monitor mnist --label stable --since 7d --output json
  mlmodel monitor mnist --threshold mean_intensity=0.2 --threshold predicted_class=0.1
  mlmodel monitor mnist --baseline data/digits   (compare with DATA, not the run's examples)
  exit codes: 0 no drift, 3 drift, 2 bad input or nothing captured, 1 backend error
"""
EXPORT_EPILOG = """\
  mlmodel export-captured mnist --out relabel/                 (all captured images, 24 h)
  mlmodel export-captured mnist --out relabel/ --low-confidence 0.6 --limit 200
  then sort relabel/unlabelled/*.png into relabel/<class>/ and run
  python -m pipeline.local_runner --data relabel/ --warm-start
"""


def _version_options(fn: Any) -> Any:
    fn = click.option("--capture-dir", default=None, metavar="DIR", help=CAPTURE_HELP)(fn)
    fn = click.option("--since", default="24h", show_default=True,
                      help="Only requests captured this recently (90s, 30m, 24h, 7d; '' = all).")(fn)
    fn = click.option("--label", default=None, help="The deployed version this label points at.")(fn)
    fn = click.option("--version", type=click.IntRange(1), default=None,
                      help="A deployed version (default: the current one).")(fn)
    return fn


def _feature_rows(report: dict[str, Any]) -> list[list[Any]]:
    return [[f["feature"], f["comparator"], f"{f['divergence']:.4f}", f"{f['threshold']:g}",
             "DRIFT" if f["drifted"] else "ok",
             f"{f['training_mean']:.3f} -> {f['served_mean']:.3f}" if "training_mean" in f else ""]
            for f in report["features"]]


@command("monitor", MONITOR_EPILOG)
@click.argument("name")
@_version_options
@click.option("--threshold", "thresholds", multiple=True, metavar="FEATURE=VALUE",
              help="Set a threshold (repeatable). Defaults: " + ", ".join(
                  f"{k}={v:g}" for k, v in DEFAULT_THRESHOLDS.items()) + ".")
@click.option("--low-confidence", type=click.FloatRange(0, 1), default=DEFAULT_LOW_CONFIDENCE,
              show_default=True, help="A prediction whose top probability is below this is "
                                      "low-confidence.")
@click.option("--baseline", default=None, metavar="DATA",
              help="Compare with DATA's train split (anything --data reads) instead of the "
                   "training examples found through ML Metadata.")
@click.option("--no-record", is_flag=True, help="Print the report without storing it in MLMD.")
@user_option
@common_options
@click.pass_context
@fail_on_errors
def monitor_cmd(ctx: click.Context, name: str, version: int | None, label: str | None,
                since: str, capture_dir: str | None, thresholds: tuple[str, ...],
                low_confidence: float, baseline: str | None, no_record: bool,
                user: str | None, **_: Any) -> None:
    """Compare the requests the server captured for a version of NAME with the training
    examples of that version's pipeline run (found through ML Metadata): TFDV's drift
    comparators on cheap image features (Jensen-Shannon divergence), the predicted-class mix
    against the training labels (L-infinity), and the share of low-confidence predictions.

    The report is stored in ML Metadata linked to the version (`mlmodel summary` shows the
    newest). Exit 0: no drift; exit 3: something drifted (for cron and CI alerts).
    """
    from registry.api import default_user
    from registry.monitor_run import MonitorRequest, run_monitor
    from registry.monitor_store import record_report

    reg, output = settings_registry(ctx)
    result = run_monitor(reg, MonitorRequest(
        name=name, version=version, label=label, since=since or None, capture_dir=capture_dir,
        thresholds=thresholds, low_confidence=low_confidence, baseline=baseline))
    report = result.report
    if not no_record:
        report["report_artifact_id"] = record_report(
            reg, report, result.target.deployment, result.training_artifact,
            acting_user(ctx, user) or default_user())
    if output == "json":
        render.print_json(report)
    else:
        render.print_table(["feature", "comparator", "divergence", "threshold", "", "mean"],
                           _feature_rows(report),
                           title=f"{name} version {report['version']}: {report['requests']:,} "
                                 f"requests vs {report['training']['examples']:,} training "
                                 "examples")
        drifted = ", ".join(report["drifted"])
        stored = (f"; stored as report {report['report_artifact_id']}"
                  if "report_artifact_id" in report else "")
        render.note(f"{'DRIFT: ' + drifted if drifted else 'no drift'} "
                    f"(exit {report['exit_code']}){stored}")
    if report["requests"] < FEW_REQUESTS:
        render.note(f"note: only {report['requests']} requests; with fewer than {FEW_REQUESTS} "
                    "the divergences are noisy (widen --since, or raise the thresholds)")
    if report["exit_code"] == EXIT_DRIFT:
        sys.exit(EXIT_DRIFT)


@command("export-captured", EXPORT_EPILOG)
@click.argument("name")
@_version_options
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder to write DIR/unlabelled/*.png into (created; existing files kept).")
@click.option("--low-confidence", type=click.FloatRange(0, 1), default=None,
              help="Only images whose top probability is below P.")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="At most N images (the least confident first).")
@common_options
@click.pass_context
@fail_on_errors
def export_captured_cmd(ctx: click.Context, name: str, version: int | None, label: str | None,
                        since: str, capture_dir: str | None, out_dir: str,
                        low_confidence: float | None, limit: int | None, **_: Any) -> None:
    """Write the images the server captured for a version of NAME as PNG files in
    OUT/unlabelled/, named with the model's answer and its confidence, to be sorted by hand
    into OUT/<class>/ folders: a layout `python -m pipeline.local_runner --data OUT` reads.
    """
    from registry.export_captured import export_captured

    reg, output = settings_registry(ctx)
    result = export_captured(reg, name, out_dir, version=version, label=label,
                             since=since or None, capture_dir=capture_dir,
                             low_confidence=low_confidence, limit=limit)
    if output == "json":
        render.print_json(result)
        return
    render.note(f"wrote {result['written']:,} image(s) to {result['folder']} "
                f"({result['captured']:,} captured, {result['selected']:,} selected); sort them "
                f"into {result['out']}/<class>/ folders, delete unlabelled/, then run "
                f"python -m pipeline.local_runner --data {result['out']} --warm-start")
