"""The three runners: same flags, same graph; errors are one line with the right exit code."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.core import ParameterSource

from contracts import settings
from contracts.flags import FLAG, NO_FLAG
from modules.hparams import HParams
from pipeline.cli_options import (
    HPARAM_FLAGS,
    HPARAM_PAIRS,
    HPARAMS_WITHOUT_FLAG,
    config_from_options,
)
from pipeline.config import PipelineConfig
from tests.conftest import TinyRun

ROOT = Path(__file__).resolve().parents[1]
SHARED_FLAGS = ["--data", "--dataset", "--pipeline-root", "--metadata", "--metadata-path",
                "--serving-dir", "--model-name", "--epochs", "--warm-start", "--deploy", "--verbose"]
# PipelineConfig fields set otherwise than by a flag of their own (see pipeline/cli_options.py).
NOT_ONE_FLAG = {"data_root", "beam_args", "hparams", "deploy_label", "deploy_user"}
RUNNER_OWN_FLAGS = {"kubeflow_runner": {"--output", "--image"}}


def _run(*args: str, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("runner", ["local_runner", "beam_runner", "kubeflow_runner"])
def test_help_explains_every_shared_flag(runner: str) -> None:
    result = _run("-m", f"pipeline.{runner}", "--help")
    assert result.returncode == 0, result.stderr
    for flag in SHARED_FLAGS:
        assert flag in result.stdout, (runner, flag)
    assert "Examples:" in result.stdout


def test_bad_flag_value_is_a_usage_error(tmp_path: Path) -> None:
    result = _run("-m", "pipeline.local_runner", "--eval-percent", "0", "--data", str(tmp_path))
    assert result.returncode == 2
    assert "eval-percent" in result.stderr and "Traceback" not in result.stderr


def test_empty_data_folder_is_named_in_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run("-m", "pipeline.local_runner", "--data", str(empty), cwd=tmp_path)
    assert result.returncode == 2
    assert str(empty) in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_kubeflow_runner_compiles_the_graph(tiny_pipeline_run: TinyRun, tmp_path: Path) -> None:
    out = tmp_path / "spec" / "mnist.json"
    result = _run("-m", "pipeline.kubeflow_runner", "--data", tiny_pipeline_run.data_path,
                  "--pipeline-root", str(tmp_path / "root"), "--output", str(out),
                  "--image", "example.com/mnist-tfx:1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    spec = json.loads(out.read_text())
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"] if "pipelineSpec" in spec else \
        spec["root"]["dag"]["tasks"]
    for name in ("ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform",
                 "Trainer", "Evaluator", "Pusher"):
        assert name in tasks, name
    assert "example.com/mnist-tfx:1" in out.read_text()


@pytest.mark.slow
def test_beam_runner_runs_the_same_graph(tiny_pipeline_run: TinyRun) -> None:
    """BeamDagRunner on the same config: the same components, cached from the local runs."""
    import io

    from pipeline.run import IN_MEMORY_BEAM, run_pipeline

    out = io.StringIO()
    summary = run_pipeline(tiny_pipeline_run.config(), orchestrator="beam",
                           beam_args=IN_MEMORY_BEAM, out=out)
    assert summary.states and set(summary.states.values()) <= {"COMPLETE", "CACHED"}, summary.states
    assert {"ExampleGen", "Transform", "Trainer", "Evaluator", "Pusher"} <= set(summary.states)
    assert summary.states["ExampleGen"] == "CACHED"
    assert "Pusher" in out.getvalue()


# --- Flags generated from PipelineConfig and HParams (in process, nothing runs) -------------------

def _command(runner: str) -> click.Command:
    return importlib.import_module(f"pipeline.{runner}").main


def _parse(*args: str, runner: str = "local_runner") -> click.Context:
    return _command(runner).make_context(runner, list(args))


def test_every_user_setting_has_a_flag() -> None:
    """Each PipelineConfig field has a flag of its own, or is in the short reviewed list."""
    params = {param.name for param in _command("local_runner").params}
    for field in dataclasses.fields(PipelineConfig):
        if field.name in NOT_ONE_FLAG:
            assert NO_FLAG in field.metadata, field.name
        else:
            assert FLAG in field.metadata and field.name in params, field.name
    assert {"deploy", "label", "user"} <= params
    paired = {name for fields, _help in HPARAM_PAIRS.values() for name in fields}
    for field in dataclasses.fields(HParams):
        assert (field.name in HPARAM_FLAGS and field.name in params) or field.name in paired \
            or field.name in HPARAMS_WITHOUT_FLAG, field.name
    assert set(HPARAM_PAIRS) <= params


def test_flag_defaults_are_the_dataclass_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """No flag retypes a default: parsing no flags gives PipelineConfig() and HParams()."""
    monkeypatch.delenv(settings.ENV_METADATA, raising=False)
    monkeypatch.delenv(settings.ENV_SERVING_DIR, raising=False)
    parsed = _parse().params
    config, defaults = config_from_options(parsed), PipelineConfig()
    for name, value in vars(defaults).items():
        assert getattr(config, name) == value, name
    for name, value in vars(HParams()).items():
        assert getattr(config.hparams, name) == value, name
    assert config == defaults
    assert config_from_options({}) == defaults  # a missing key keeps the dataclass default
    assert (defaults.metadata_path, defaults.serving_dir, defaults.pipeline_root,
            defaults.log_dir) == (settings.DEFAULT_METADATA, settings.DEFAULT_SERVING_DIR,
                                  settings.DEFAULT_PIPELINE_ROOT, settings.DEFAULT_LOG_DIR)


@pytest.mark.parametrize("flag", ["--metadata", "--metadata-path"])
def test_metadata_flag_and_its_alias(flag: str) -> None:

    config = config_from_options(_parse(flag, "mysql://u@h:3306/mlmd").params)
    assert config.metadata_path == "mysql://u@h:3306/mlmd"


def test_path_defaults_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.ENV_METADATA, "/env/metadata.sqlite")
    monkeypatch.setenv(settings.ENV_SERVING_DIR, "/env/serving")
    parsed = _parse().params
    assert (parsed["metadata_path"], parsed["serving_dir"]) == ("/env/metadata.sqlite", "/env/serving")
    assert _parse("--metadata", "flag.sqlite").params["metadata_path"] == "flag.sqlite"
    assert (settings.default_metadata(), settings.default_serving_dir()) == \
        ("/env/metadata.sqlite", "/env/serving")
    monkeypatch.setenv(settings.ENV_METADATA, "")
    assert _parse().params["metadata_path"] == settings.DEFAULT_METADATA


def test_the_runners_share_the_same_flags_and_help() -> None:
    runners = ["local_runner", "beam_runner", "kubeflow_runner"]
    records = {}
    for runner in runners:
        command, ctx = _command(runner), _parse(runner=runner)
        records[runner] = {
            tuple(param.opts + param.secondary_opts): param.get_help_record(ctx)
            for param in command.params if isinstance(param, click.Option)
            and not set(param.opts) & RUNNER_OWN_FLAGS.get(runner, set())}
        records[runner].pop(("-h", "--help"), None)
        assert len({param.name for param in command.params}) == len(command.params), runner
    assert records["local_runner"] == records["beam_runner"] == records["kubeflow_runner"]
    assert ("--metadata", "--metadata-path") in records["local_runner"]
    assert ("--augment", "--no-augment") in records["local_runner"]
    assert ("--cache", "--no-cache") in records["local_runner"]


def test_help_keeps_the_budget_wording() -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(_command("local_runner"), ["--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for words in ("Training epochs. Default: from the training split's size",
                  "Default: from the training split's size (32 up to 5,000 examples",
                  "Random transforms of the training images (see --augmentation). Default: on "
                  "when the classes",
                  "(env MNIST_TFX_METADATA)", "(env MNIST_TFX_SERVING_DIR)",
                  "[default: runs/metadata.sqlite]", "[default: stable]", "[default: cache]"):
        assert words in text, words


def test_every_flag_reaches_its_field(tmp_path: Path) -> None:
    """A command line with a non-default value for every flag round-trips into the config."""
    args = ["--data", str(tmp_path), "--dataset", "fashion-mnist", "--class-names", "a, b,c",
            "--eval-percent", "30", "--model-name", "fashion", "--pipeline-root", "r/root",
            "--metadata", "m.sqlite", "--serving-dir", "s", "--log-dir", "l",
            "--filters", "8", "16", "--hidden-units", "32", "16", "--dropout", "0.5",
            "--learning-rate", "0.01", "--epochs", "3", "--batch-size", "16", "--no-augment",
            "--augmentation", "affine", "--convs-per-block", "3", "--input-blur", "0.5",
            "--precision", "float32", "--label-smoothing", "0.2", "--lr-schedule", "constant",
            "--max-train-minutes", "2.5",
            "--accuracy-threshold", "0.8", "--max-accuracy-drop", "0.05",
            "--no-infra-validation", "--warm-start",
            "--tune", "--tune-trials", "3", "--in-memory-examples", "100", "--no-cache",
            "--deploy", "--label", "canary", "--user", "ann", "--verbose",
            "--s3-endpoint-url", "http://127.0.0.1:9000"]
    ctx = _parse(*args)
    for param in _command("local_runner").params:
        if param.name != "help":
            assert ctx.get_parameter_source(param.name) == ParameterSource.COMMANDLINE, param.name
    config = config_from_options(ctx.params)
    assert config == PipelineConfig(
        model_name="fashion", data=str(tmp_path), dataset="fashion-mnist", class_names=("a", "b", "c"),
        eval_percent=30, pipeline_root="r/root", metadata_path="m.sqlite", serving_dir="s",
        log_dir="l", hparams=HParams(filters_1=8, filters_2=16, hidden_units_1=32,
                                     hidden_units_2=16, dropout=0.5, learning_rate=0.01,
                                     epochs=3, batch_size=16, augment=False,
                                     augmentation="affine", convs_per_block=3, input_blur=0.5,
                                     precision="float32", label_smoothing=0.2,
                                     lr_schedule="constant"),
        max_train_minutes=2.5, accuracy_threshold=0.8, max_accuracy_drop=0.05,
        infra_validation=False, warm_start=True,
        tune=True, tune_trials=3, in_memory_examples=100, enable_cache=False,
        deploy_label="canary", deploy_user="ann", verbose=True,
        s3_endpoint_url="http://127.0.0.1:9000")
    defaults = PipelineConfig()
    for field in dataclasses.fields(PipelineConfig):
        if field.name not in ("data_root", "beam_args"):
            assert getattr(config, field.name) != getattr(defaults, field.name), field.name
    assert config_from_options(_parse("--label", "canary").params).deploy_label is None


def test_dataset_choices_are_the_known_datasets() -> None:
    from pipeline.datasets import DATASETS

    option = next(p for p in _command("local_runner").params if p.name == "dataset")
    assert tuple(option.type.choices) == DATASETS


def test_a_field_without_a_flag_decision_is_an_error() -> None:
    from pipeline.cli_options import _field_options

    @dataclasses.dataclass
    class Undecided:
        new_setting: int = 1

    with pytest.raises(TypeError, match="new_setting has no flag"):
        _field_options(dataclasses.fields(Undecided)[0])


def test_building_the_graph_skips_tfx_v1_and_its_cloud_extensions() -> None:
    """``tfx.v1`` imports its Google Cloud extensions (google.cloud.aiplatform: ~2.5 s of every
    run's start); the graph and the local runner take the same classes from their own modules."""
    code = """
import sys
from contracts.runtime import configure_tensorflow
configure_tensorflow()
import pipeline.pipeline
import pipeline.run
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
print(sorted(m for m in ('tfx.v1', 'google.cloud.aiplatform') if m in sys.modules))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
