"""The body the local and Beam runners share: flags -> config -> run -> one-line errors.

This is the runner's edge: the only place the pipeline reaches the registry (``--deploy``).
"""

from __future__ import annotations

import sys
from typing import Any, Literal

import click

from pipeline.cli_options import config_from_options
from pipeline.config import PipelineConfig
from pipeline.heap import skip_exit_collection


def registry_deploy(config: PipelineConfig) -> Any:
    """``--deploy``: deploy the run's blessed push through the registry (a DeployResult)."""
    from registry.api import open_registry

    return open_registry(config.metadata_path, config.serving_dir).deploy(
        config.model_name, label=config.deploy_label, user=config.deploy_user)


def run_from_options(options: dict[str, Any], orchestrator: Literal["local", "beam"],
                     beam_args: list[str] | None = None) -> None:
    """Run; turn every expected failure into one line on stderr and exit code 1 or 2.

    The process exits after this, so its heap is left out of the interpreter's last collection.
    """
    from pipeline.components.image_example_gen import DataError
    from pipeline.run import PipelineFailed, run_pipeline

    try:
        config = config_from_options(options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        summary = run_pipeline(config, orchestrator=orchestrator, beam_args=beam_args,
                               deploy=registry_deploy)
    except DataError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except PipelineFailed as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        skip_exit_collection()
    if summary.blessed is False:
        sys.exit(0)
