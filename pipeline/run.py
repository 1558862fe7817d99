"""Run the graph with a local orchestrator and report: the part the runners share."""

from __future__ import annotations

import datetime
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any, Literal, TextIO

from contracts.runtime import configure_tensorflow
from contracts.training import describe_training
from datasources import storage
from datasources.readers import DataError
from pipeline.config import PipelineConfig
from pipeline.datasets import ResolvedData, resolve_data
from pipeline.heap import imports_frozen
from pipeline.progress import ProgressReporter, captured_output, reporting
from pipeline.run_summary import RunSummary, infra_lines

Deployer = Callable[[PipelineConfig], Any]  # deploys the run's blessed push; returns what it did

# DirectRunner in-process is about twice as fast as multi-processing here, even on all 70k
# Fashion-MNIST images (STACK.md; ExampleGen 11.7 s vs 60 s). ``--sdk_container_image=none``
# names a dependency flag, so TFX does not build and stage a package of itself for every Beam
# component (~4 s each); local workers share this environment and need none.
IN_MEMORY_BEAM = ["--direct_running_mode=in_memory", "--direct_num_workers=1",
                  "--sdk_container_image=none"]
MULTI_PROCESS_BEAM = ["--direct_running_mode=multi_processing", "--direct_num_workers=0",
                      "--sdk_container_image=none"]


class PipelineFailed(RuntimeError):
    """A component failed; the message names it and points at the log file."""


def quiet_warnings() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="tensorflow_transform")


def beam_options(config: PipelineConfig, beam_args: list[str] | None) -> list[str]:
    """The Beam arguments of a run: the runner's (or in-memory), plus ``--s3-endpoint-url``."""
    beam = list(beam_args) if beam_args else list(IN_MEMORY_BEAM)
    if config.s3_endpoint_url and not any(a.startswith("--s3_endpoint_url") for a in beam):
        beam.append(f"--s3_endpoint_url={config.s3_endpoint_url}")
    return beam


def prepare_data(config: PipelineConfig) -> ResolvedData:
    """Resolve (and for the embedded default, materialise) the input; its layout is checked
    there, once, before Beam (``data.layout`` goes on to ExampleGen)."""
    return resolve_data(config.data, config.dataset, config.data_root, config.class_names,
                        eval_percent=config.eval_percent)


def run_pipeline(
    config: PipelineConfig,
    orchestrator: Literal["local", "beam"] = "local",
    beam_args: list[str] | None = None,
    out: TextIO | None = None,
    deploy: Deployer | None = None,
) -> RunSummary:
    """Build the graph for ``config``, run it, deploy if asked, and return what happened.

    ``deploy`` is how ``--deploy`` reaches the registry: the runner passes it in
    (``pipeline.runner_cli.registry_deploy``), so the pipeline itself imports no registry.
    """
    if config.deploy_label is not None and deploy is None:
        raise ValueError("config.deploy_label is set but no deploy callback was given; pass "
                         "deploy=pipeline.runner_cli.registry_deploy (the runners do)")
    out = out or sys.stdout
    configure_tensorflow()  # before the imports below load TensorFlow
    quiet_warnings()
    beam = beam_options(config, beam_args)
    storage.configure(beam)  # remote --data is looked at before Beam runs
    data = prepare_data(config)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_path = os.path.abspath(os.path.join(config.log_dir, f"{config.model_name}-{stamp}.log"))
    out.write(f"Pipeline {config.pipeline_name!r} on {data.description}\n"
              f"  data: {data.path}\n  log:  {log_path}\n")
    out.flush()
    started = time.monotonic()
    # TensorFlow, TFX and Beam are imported inside the capture: their import-time noise
    # (CUDA probing, deprecation warnings) belongs in the log file, not on the terminal.
    with captured_output(log_path, config.verbose) as terminal:
        from ml_metadata.metadata_store import metadata_store
        from tfx.orchestration.local.local_dag_runner import LocalDagRunner

        from metastore.metadata_config import connection_config
        from pipeline.components.infra_server_ahead import started_after_training
        from pipeline.components.infra_validator import model_producers
        from pipeline.pipeline import create_pipeline
        from pipeline.run_summary import summarize_run

        connection = connection_config(config.metadata_path)
        pipeline = create_pipeline(config, data, connection, beam)
        stream = terminal if out is sys.stdout else out
        progress = ProgressReporter(stream, total=len(pipeline.components))
        error: BaseException | None = None
        with (started_after_training(model_producers(pipeline)) as after_launch,
              reporting(progress, after_launch), imports_frozen()):
            try:
                if orchestrator == "beam":
                    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

                    BeamDagRunner().run(pipeline)
                else:
                    LocalDagRunner().run(pipeline)
            except Exception as exc:  # noqa: BLE001 - reported below with the component's name
                error = exc
    elapsed = time.monotonic() - started
    store = metadata_store.MetadataStore(connection)
    summary = summarize_run(store, config.pipeline_name)
    if summary is not None:
        summary.seconds = elapsed
        summary.component_seconds = {
            name: t.seconds for name, t in progress.timings.items() if t.seconds is not None
        }
    if error is not None:
        failed = progress.current or "the pipeline"
        bad_data = _data_error(error)
        if bad_data is not None:  # bad input found while reading: the same kind as a layout error
            raise DataError(f"{bad_data}\n  full log: {log_path}") from error
        raise PipelineFailed(f"{failed} failed: {_one_line(error)}\n  full log: {log_path}") from error
    if summary is None:
        raise PipelineFailed(f"the run left no record in ML Metadata ({config.metadata_path})")
    if config.deploy_label is not None and summary.pushed_version is not None and deploy:
        summary.deployed = deploy(config)
    out.write(format_summary(config, summary, elapsed, log_path))
    out.flush()
    return summary


def _data_error(error: BaseException) -> str | None:
    """The message of a DataError inside ``error`` (Beam and TFX may have wrapped it), or None."""
    from pipeline.components.image_example_gen_executor import find_data_error

    return find_data_error(error)


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0] if len(text.splitlines()) == 1 else text


def not_blessed_advice(config: PipelineConfig, summary: RunSummary) -> list[str]:
    """Which blessing threshold failed, by how much, and the flags that matter."""
    advice: list[str] = []
    accuracy = summary.accuracy
    if accuracy is not None and accuracy < config.accuracy_threshold:
        advice.append(
            f"eval accuracy {accuracy:.4f} < --accuracy-threshold {config.accuracy_threshold} "
            f"(short by {config.accuracy_threshold - accuracy:.4f})")
    baseline = summary.baseline_accuracy
    if accuracy is not None and baseline is not None and baseline - accuracy > config.max_accuracy_drop:
        advice.append(
            f"eval accuracy {accuracy:.4f} is {baseline - accuracy:.4f} below the last blessed "
            f"model's {baseline:.4f} (--max-accuracy-drop {config.max_accuracy_drop})")
    if not advice:
        advice.append("a threshold failed; see the Evaluator's output in the log")
    training = summary.training or {}
    stopped = str(training.get("stopped_by", ""))
    if stopped.startswith("time limit"):
        advice.append("training hit --max-train-minutes: raise it to train the planned epochs")
    elif training:
        advice.append(f"more data helps most ({training.get('train_examples', '?')} training "
                      f"examples, {training.get('num_classes', '?')} classes); or a longer budget "
                      "(--epochs), or --tune; or lower --accuracy-threshold if this accuracy is "
                      "what the task allows")
    return advice


def format_summary(config: PipelineConfig, summary: RunSummary, elapsed: float,
                   log_path: str) -> str:
    """The end-of-run report: blessing, accuracy, pushed version, and where everything is."""
    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    lines = [f"\nRun {summary.run_id} finished in {elapsed:.1f} s"]
    cached = [n for n, s in summary.states.items() if s == "CACHED"]
    if cached:
        lines.append(f"  cached:        {', '.join(cached)}")
    if summary.training:
        lines.append(f"  training:      {describe_training(summary.training)}")
        lines.append(f"                 why: {summary.training.get('reason', '-')}")
    blessed = {True: "yes", False: "NO (thresholds not met)", None: "n/a"}[summary.blessed]
    lines.append(f"  blessed:       {blessed}")
    accuracy = f"  eval accuracy: {fmt(summary.accuracy)}"
    if summary.baseline_accuracy is not None:
        accuracy += f" (last blessed: {fmt(summary.baseline_accuracy)})"
    lines.append(accuracy + f"; threshold >= {config.accuracy_threshold}")
    if summary.blessed is False:
        lines += [f"  why not:       {reason}" for reason in not_blessed_advice(config, summary)]
    lines += infra_lines(summary)
    if summary.pushed_version is not None:
        lines.append(f"  pushed:        version {summary.pushed_version} -> {summary.pushed_path}")
    else:
        lines.append("  pushed:        nothing (serving_model/ unchanged)")
    deployed = summary.deployed
    if deployed is not None:
        lines.append(f"  deployed:      {deployed.serving_name} version {deployed.latest_version}")
    lines += [
        f"  artifacts:     {config.pipeline_root_uri}",
        f"  metadata:      {config.metadata_path}",
        f"  tensorboard:   tensorboard --logdir {summary.tensorboard_dir or '(no trainer run)'}",
        f"  log:           {log_path}",
    ]
    return "\n".join(lines) + "\n"
