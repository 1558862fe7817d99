"""``python -m pipeline.local_runner``: run the whole pipeline in this process (LocalDagRunner)."""

from __future__ import annotations

import click

import modules  # noqa: F401,I001  (selects Keras 2 before TensorFlow is imported)
from pipeline.cli_options import EXAMPLES, pipeline_options
from pipeline.runner_cli import run_from_options


@click.command(epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"],
                                                  "max_content_width": 100})
@pipeline_options
def main(**options: object) -> None:
    """Run ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Transform -> Trainer ->
    Resolver -> Evaluator -> Pusher locally, with ML Metadata on SQLite (or MySQL).

    One line per component as it starts and finishes; TFX's own logs go to a log file (see
    --verbose). Small inputs run Beam in-process, large ones on every core.
    """
    run_from_options(dict(options), orchestrator="local")


if __name__ == "__main__":
    main()
