"""The body the local and Beam runners share: flags -> config -> run -> one-line errors."""

from __future__ import annotations

import sys
from typing import Any, Literal

import click

from pipeline.cli_options import config_from_options


def run_from_options(options: dict[str, Any], orchestrator: Literal["local", "beam"],
                     beam_args: list[str] | None = None) -> None:
    """Run; turn every expected failure into one line on stderr and exit code 1 or 2."""
    from pipeline.components.image_example_gen import DataError
    from pipeline.run import PipelineFailed, run_pipeline

    try:
        config = config_from_options(options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        summary = run_pipeline(config, orchestrator=orchestrator, beam_args=beam_args)
    except DataError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except PipelineFailed as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if summary.blessed is False:
        sys.exit(0)
