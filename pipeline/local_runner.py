"""``python -m pipeline.local_runner``: run the whole pipeline in this process (LocalDagRunner)."""

from __future__ import annotations

import click

from contracts.runtime import configure_tensorflow

configure_tensorflow()  # Keras 2 and one log level, before anything imports TensorFlow

from pipeline.cli_options import EXAMPLES, pipeline_options  # noqa: E402
from pipeline.runner_cli import run_from_options  # noqa: E402


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
