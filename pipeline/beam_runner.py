"""``python -m pipeline.beam_runner``: the same graph orchestrated by Beam (BeamDagRunner).

Arguments after ``--`` go to Beam unchanged, e.g. other runners::

    python -m pipeline.beam_runner -- --runner=FlinkRunner --flink_master=localhost:8081
    python -m pipeline.beam_runner -- --runner=SparkRunner --spark_master_url=spark://host:7077
    python -m pipeline.beam_runner --pipeline-root gs://b/root -- --runner=DataflowRunner \\
        --project=P --region=R --temp_location=gs://b/tmp
"""

from __future__ import annotations

import click

from contracts.runtime import configure_tensorflow

configure_tensorflow()  # Keras 2 and one log level, before anything imports TensorFlow

from pipeline.cli_options import EXAMPLES, pipeline_options  # noqa: E402
from pipeline.run import MULTI_PROCESS_BEAM  # noqa: E402
from pipeline.runner_cli import run_from_options  # noqa: E402


@click.command(epilog=EXAMPLES + "\n\b\nBeam arguments (after --):\n"
               "  -- --runner=FlinkRunner --flink_master=localhost:8081\n"
               "  -- --runner=SparkRunner --spark_master_url=spark://host:7077\n"
               "  -- --runner=DataflowRunner --project=P --region=R --temp_location=gs://b/tmp\n",
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100,
                                 "ignore_unknown_options": True})
@pipeline_options
@click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
def main(beam_args: tuple[str, ...], **options: object) -> None:
    """Run the pipeline with Beam orchestrating the components (BeamDagRunner).

    Every component's own Beam work gets the Beam arguments given after the flags; the default is
    DirectRunner with multi-processing on every core
    (--direct_running_mode=multi_processing --direct_num_workers=0).
    """
    run_from_options(dict(options), orchestrator="beam", beam_args=list(beam_args) or MULTI_PROCESS_BEAM)


if __name__ == "__main__":
    main()
