"""``mlmodel report``: an HTML report on a model's newest run (TensorFlow loads only here)."""

from __future__ import annotations

import os
from typing import Any

import click

from registry import render
from registry.cliutil import command, common_options, fail_on_errors, settings


@command("report", "  mlmodel report mnist\n  mlmodel report mnist --out /tmp/mnist.html\n")
@click.argument("name")
@click.option("--out", default="report.html", show_default=True, type=click.Path(dir_okay=False),
              help="HTML file to write (atomically; images are embedded).")
@common_options
@click.pass_context
@fail_on_errors
def report_cmd(ctx: click.Context, name: str, out: str, **_: Any) -> None:
    """Write an HTML report on NAME's newest run: data statistics and anomalies, training curves,
    per-class accuracy, confusion matrix, misclassified images, and the previous blessed model."""
    from registry.report import write_report  # TensorFlow and matplotlib load only here

    values = settings(ctx)
    path = write_report(values.metadata, values.serving_dir, name, out)
    render.print_table(["result", "path", "size"], [["ok", path, os.path.getsize(path)]],
                       output=values.output)
