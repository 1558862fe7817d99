"""``python -m pipeline.kubeflow_runner``: compile the same graph to a KFP v2 pipeline spec (JSON).

Submit the JSON with the KFP SDK or UI; schedule it weekly as a KFP recurring run. Kubeflow keeps
ML Metadata itself, so --metadata is not used. --data must be where the pipeline's pods can read
it (gs://, s3:// or another Beam filesystem, or a mounted volume), --pipeline-root gs:// or a
mounted volume (TFX writes artifacts through tf.io.gfile), and --image an image with this
project installed (``pip install .`` on top of gcr.io/tfx-oss-public/tfx:1.16.0). With --data in
a store tf.io.gfile cannot list (s3://), ExampleGen's driver hook runs
``pipeline.kfp_example_gen_driver`` instead of TFX's (see there).
"""

from __future__ import annotations

import dataclasses
import os

import click

from contracts.runtime import configure_tensorflow

configure_tensorflow()  # Keras 2 and one log level, before anything imports TensorFlow

from pipeline.cli_options import EXAMPLES, config_from_options, pipeline_options  # noqa: E402
from pipeline.kfp_example_gen_driver import (  # noqa: E402
    TFX_DRIVER_MODULE,
    uses_storage_driver,
)

DEFAULT_IMAGE = "mnist-tfx:latest"


@click.command(epilog=EXAMPLES.replace("local_runner", "kubeflow_runner"),
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@pipeline_options
@click.option("--output", "output", default="runs/kubeflow/mnist_pipeline.json", show_default=True,
              type=click.Path(dir_okay=False), help="Where to write the compiled pipeline spec.")
@click.option("--image", default=DEFAULT_IMAGE, show_default=True,
              help="Container image with this project installed, used by every component.")
def main(output: str, image: str, **options: object) -> None:
    """Compile the pipeline for Kubeflow Pipelines (KFP v2 IR JSON) without running it."""
    from tfx import v1 as tfx

    from datasources import storage
    from pipeline.datasets import resolve_data
    from pipeline.pipeline import create_pipeline
    from pipeline.run import MULTI_PROCESS_BEAM, beam_options, quiet_warnings

    quiet_warnings()
    try:
        config = config_from_options(dict(options))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    # No InfraValidator on Kubeflow (docs/serving.md, "InfraValidator"): TFX's KubernetesRunner
    # needs KFP v1's Argo pod and runs the tensorflow/serving image, not our server.
    config = dataclasses.replace(config, infra_validation=False)
    beam = beam_options(config, MULTI_PROCESS_BEAM)
    storage.configure(beam)  # remote --data is looked at (its layout) when compiling
    data = resolve_data(config.data, config.dataset, config.data_root, config.class_names)
    pipeline = create_pipeline(config, data, metadata_connection_config=None,
                               beam_pipeline_args=beam)
    os.makedirs(os.path.dirname(os.path.abspath(output)) or ".", exist_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(output)),
        output_filename=os.path.basename(output),
    )
    runner.run(pipeline, write_out=True)
    input_base = next(c.exec_properties["input_base"] for c in pipeline.components
                      if "input_base" in c.exec_properties)
    if uses_storage_driver(input_base):
        use_storage_driver(output)
    click.echo(f"wrote {output} (KFP v2 pipeline spec, image {image}, {len(pipeline.components)} components)")


def use_storage_driver(spec_path: str) -> None:
    """Point ExampleGen's pre-cache-check hook in the compiled spec at our driver module
    (``pipeline.kfp_example_gen_driver``: why, there). Rewritten in place, atomically."""
    import json

    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    changed = 0
    for executor in spec["pipelineSpec"]["deploymentSpec"]["executors"].values():
        hook = executor.get("container", {}).get("lifecycle", {}).get("preCacheCheck")
        if hook and hook.get("command", [])[-1:] == [TFX_DRIVER_MODULE]:
            hook["command"] = [*hook["command"][:-1], "pipeline.kfp_example_gen_driver"]
            changed += 1
    if not changed:
        raise click.ClickException(
            f"{spec_path}: found no ExampleGen driver hook ({TFX_DRIVER_MODULE}) to replace; "
            "this TFX compiles ExampleGen differently, and --data in object storage needs it")
    tmp = f"{spec_path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(spec, handle, sort_keys=True)
    os.replace(tmp, spec_path)


if __name__ == "__main__":
    main()
