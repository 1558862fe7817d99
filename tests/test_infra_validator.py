"""InfraValidator on our own server: blessing, failure reasons, nothing pushed, no stray process.

The executor tests run TFX's InfraValidator executor (ours, ``pipeline/components/infra_validator``)
on small SavedModels and a hand-made Examples artifact, then TFX's Pusher (ours) on its blessing;
the pipeline tests read the shared tiny run (``tiny_pipeline_run``).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contracts import mlmd
from contracts.runtime import configure_tensorflow

configure_tensorflow()

import tensorflow as tf  # noqa: E402
from tfx.dsl.components.base import base_executor  # noqa: E402
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs  # noqa: E402
from tfx.utils import proto_utils  # noqa: E402

from contracts.examples import IMAGE_KEY, IMAGE_PIXELS, LABEL_KEY  # noqa: E402
from contracts.signatures import INPUT_EXAMPLES, OUTPUT_PROBABILITIES, SERVING_EXAMPLES  # noqa: E402
from pipeline.components import infra_validator as iv  # noqa: E402
from pipeline.components.infra_validator_runner import LocalServingRunner  # noqa: E402
from pipeline.components.pusher_executor import PusherExecutor  # noqa: E402

NUM_EXAMPLES = 3


# -- fixtures: models, examples, and every server process a test started --------------------
@pytest.fixture(scope="module")
def good_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.datagen import export_tiny_model

    return export_tiny_model(tmp_path_factory.mktemp("good") / "Format-Serving")


class _WrongShape(tf.Module):
    """serving_examples parses 'image' with one pixel too many: loads, fails on every example."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_EXAMPLES)])
    def serve(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(
            examples, {IMAGE_KEY: tf.io.FixedLenFeature([IMAGE_PIXELS + 1], tf.int64)})
        return {OUTPUT_PROBABILITIES: tf.cast(parsed[IMAGE_KEY][:, :10], tf.float32)}


@pytest.fixture(scope="module")
def wrong_shape_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wrong_shape") / "Format-Serving"
    module = _WrongShape()
    tf.saved_model.save(module, str(path),
                        signatures={SERVING_EXAMPLES: module.serve.get_concrete_function()})
    return path


def _copy(good_model: Path, where: Path) -> Path:
    import shutil

    path = where / "Format-Serving"
    shutil.copytree(good_model, path)
    return path


@pytest.fixture()
def broken_model(tmp_path: Path, good_model: Path) -> Path:
    """The good model without its variables: its graph parses, no server can load it."""
    path = _copy(good_model, tmp_path / "broken")
    for file in (path / "variables").iterdir():
        file.unlink()
    return path


@pytest.fixture()
def unparseable_model(tmp_path: Path, good_model: Path) -> Path:
    """The good model with a truncated saved_model.pb: not even its signatures can be read."""
    path = _copy(good_model, tmp_path / "unparseable")
    pb = path / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:200])
    return path


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> standard_artifacts.Examples:
    """An ExampleGen-shaped Examples artifact: gzipped TFRecords of raw tf.Examples per split."""
    root = tmp_path_factory.mktemp("examples")
    rng = np.random.default_rng(0)
    for split in ("train", "eval"):
        os.makedirs(root / f"Split-{split}")
        options = tf.io.TFRecordOptions(compression_type="GZIP")
        with tf.io.TFRecordWriter(str(root / f"Split-{split}" / "data_tfrecord-00000.gz"),
                                  options) as writer:
            for label in range(5):
                pixels = rng.integers(0, 256, IMAGE_PIXELS).tolist()
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    IMAGE_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=pixels)),
                    LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                })).SerializeToString())
    artifact = standard_artifacts.Examples()
    artifact.uri = str(root)
    artifact.split_names = artifact_utils.encode_split_names(["train", "eval"])
    return artifact


@pytest.fixture()
def started_pids(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The pid of every server a runner started during the test."""
    pids: list[int] = []
    original = LocalServingRunner.Start

    def start(self: LocalServingRunner) -> None:
        original(self)
        pids.append(self.pid or 0)

    monkeypatch.setattr(LocalServingRunner, "Start", start)
    yield pids


def _gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _validate(model_dir: Path, examples: standard_artifacts.Examples, tmp_path: Path,
              num_tries: int = 1) -> standard_artifacts.InfraBlessing:
    model = standard_artifacts.Model()
    model.uri = str(model_dir.parent)
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / "blessing")
    os.makedirs(blessing.uri, exist_ok=True)
    executor = iv.InfraValidatorExecutor(base_executor.BaseExecutor.Context(
        tmp_dir=str(tmp_path / "tmp"), unique_id="1"))
    executor.Do(
        {standard_component_specs.MODEL_KEY: [model],
         standard_component_specs.EXAMPLES_KEY: [examples]},
        {standard_component_specs.BLESSING_KEY: [blessing]},
        {standard_component_specs.SERVING_SPEC_KEY: proto_utils.proto_to_json(
            iv.serving_spec("candidate")),
         standard_component_specs.VALIDATION_SPEC_KEY: proto_utils.proto_to_json(
             iv.validation_spec(60, num_tries)),
         standard_component_specs.REQUEST_SPEC_KEY: proto_utils.proto_to_json(
             iv.request_spec(NUM_EXAMPLES))})
    return blessing


def _push(model_dir: Path, infra: standard_artifacts.InfraBlessing, serving: Path,
          tmp_path: Path) -> standard_artifacts.PushedModel:
    """Our Pusher with an Evaluator blessing that passed and ``infra``."""
    model = standard_artifacts.Model()
    model.uri = str(model_dir.parent)
    model_blessing = standard_artifacts.ModelBlessing()
    model_blessing.uri = str(tmp_path / "model_blessing")
    model_blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    from tfx.proto import pusher_pb2

    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(serving)))
    PusherExecutor().Do(
        {standard_component_specs.MODEL_KEY: [model],
         standard_component_specs.MODEL_BLESSING_KEY: [model_blessing],
         standard_component_specs.INFRA_BLESSING_KEY: [infra]},
        {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
        {standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination)})
    return pushed


def _tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + file.read_bytes())
    return digest.hexdigest()


def _previous_push(serving: Path, good_model: Path) -> tuple[Path, str]:
    from pipeline.components.pusher_executor import push_new_version

    _, path = push_new_version(str(good_model), str(serving))
    return Path(path), _tree_digest(Path(path))


# -- a good model ---------------------------------------------------------------------------
def test_a_good_model_is_infra_blessed_with_warmup_and_pushed(
        good_model: Path, examples: Any, tmp_path: Path, started_pids: list[int]) -> None:
    blessing = _validate(good_model, examples, tmp_path)
    assert blessing.get_int_custom_property("blessed") == 1
    assert os.path.exists(os.path.join(blessing.uri, "INFRA_BLESSED"))
    assert blessing.get_int_custom_property(mlmd.INFRA_REQUESTS) == NUM_EXAMPLES
    assert started_pids and all(_gone(pid) for pid in started_pids)
    # make_warmup: the blessing holds the model plus the requests it answered, as PredictionLogs
    assert blessing.get_int_custom_property("has_model") == 1
    from tensorflow_serving.apis import prediction_log_pb2

    warm = Path(blessing.uri) / "stamped_model" / "assets.extra" / "tf_serving_warmup_requests"
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(str(warm))]
    assert len(logs) == NUM_EXAMPLES
    assert {log.predict_log.request.model_spec.signature_name for log in logs} == {
        SERVING_EXAMPLES}
    # the Pusher pushes the warm-up carrying model
    serving = tmp_path / "serving_model"
    pushed = _push(good_model, blessing, serving, tmp_path)
    assert pushed.get_int_custom_property("pushed") == 1
    assert (serving / "1" / "assets.extra" / "tf_serving_warmup_requests").is_file()


def test_a_server_token_in_the_environment_does_not_reach_the_validation_server(
        good_model: Path, examples: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user who exported SERVING_AUTH_TOKEN (for `mlmodel status`) still gets the model
    infra-blessed: the private validation server runs without it (TFX's client sends none)."""
    from pipeline.components import infra_validator_runner as runner
    from serving.options import AUTH_TOKEN_ENV

    assert runner.AUTH_TOKEN_ENV == AUTH_TOKEN_ENV  # the pipeline names it without importing it
    monkeypatch.setenv(AUTH_TOKEN_ENV, "s3cret")
    env = runner.child_env(os.environ)
    assert AUTH_TOKEN_ENV not in env and env["PYTHONPATH"]
    blessing = _validate(good_model, examples, tmp_path)
    assert blessing.get_int_custom_property("blessed") == 1


# -- broken models: not blessed, nothing pushed, the previous push untouched ------------------
@pytest.mark.parametrize("kind", ["broken_model", "wrong_shape_model", "unparseable_model"])
def test_a_broken_model_is_not_infra_blessed_and_nothing_is_pushed(
        kind: str, request: pytest.FixtureRequest, good_model: Path, examples: Any,
        tmp_path: Path, started_pids: list[int]) -> None:
    model_dir: Path = request.getfixturevalue(kind)
    serving = tmp_path / "serving_model"
    previous, before = _previous_push(serving, good_model)
    blessing = _validate(model_dir, examples, tmp_path)
    assert blessing.get_int_custom_property("blessed") == 0
    assert os.path.exists(os.path.join(blessing.uri, "INFRA_NOT_BLESSED"))
    assert not blessing.get_int_custom_property("has_model")
    failure = json.loads(blessing.get_string_custom_property(mlmd.INFRA_FAILURE))
    assert failure["tries"] == 1, failure
    if kind == "broken_model":  # the server could not load it: its log says so
        assert "failed to load" in "\n".join(failure["log"])
        # the end-of-run report says so too: why, then the server's own lines
        from pipeline.run_summary import RunSummary, infra_lines

        lines = infra_lines(RunSummary("p", "r", {"InfraValidator": "COMPLETE"},
                                       infra_blessed=False, infra_failure=failure))
        assert "nothing pushed" in lines[0] and failure["reason"] in lines[1], lines
        assert [line.split("server log:  ", 1)[1] for line in lines[2:]] == failure["log"]
    elif kind == "wrong_shape_model":  # loaded, then refused the examples: the server's answer
        assert "INVALID_ARGUMENT" in failure["reason"] and failure["log"]
    else:  # TFX reads the signatures before starting a server: no server was needed
        assert "signatures could not be read" in failure["reason"]  # its early server stopped
    assert all(_gone(pid) for pid in started_pids)
    pushed = _push(model_dir, blessing, serving, tmp_path)
    assert pushed.get_int_custom_property("pushed") == 0
    assert sorted(p.name for p in serving.iterdir() if not p.name.startswith(".")) == ["1"]
    assert _tree_digest(previous) == before


def test_retries_use_a_new_server_each_time(broken_model: Path, examples: Any, tmp_path: Path,
                                            started_pids: list[int]) -> None:
    blessing = _validate(broken_model, examples, tmp_path, num_tries=2)
    assert json.loads(blessing.get_string_custom_property(mlmd.INFRA_FAILURE))["tries"] == 2
    assert len(set(started_pids)) == 2 and all(_gone(pid) for pid in started_pids)


def test_an_interrupted_validation_stops_the_server(
        good_model: Path, examples: Any, tmp_path: Path, started_pids: list[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tfx.components.infra_validator.model_server_clients import tensorflow_serving_client

    def interrupted(self: Any, requests: Any) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # TFX's handler turns it into GracefulShutdown

    monkeypatch.setattr(tensorflow_serving_client.TensorFlowServingClient, "SendRequests",
                        interrupted)
    from tfx.components.infra_validator import error_types

    with pytest.raises(error_types.GracefulShutdown):
        _validate(good_model, examples, tmp_path, num_tries=3)
    assert len(started_pids) == 1 and _gone(started_pids[0])


# -- the server started when the Trainer finished (pipeline.components.infra_server_ahead) ---
def test_a_server_started_after_training_is_claimed_not_started_again(
        good_model: Path, examples: Any, tmp_path: Path, started_pids: list[int]) -> None:
    from pipeline.components import infra_server_ahead

    infra_server_ahead.start(str(good_model), "candidate")
    assert len(started_pids) == 1
    blessing = _validate(good_model, examples, tmp_path)
    assert blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_int_custom_property(mlmd.INFRA_REQUESTS) == NUM_EXAMPLES
    assert len(started_pids) == 1 and _gone(started_pids[0])  # that one answered, then stopped
    assert infra_server_ahead.claim(str(good_model), "candidate") is None


def test_a_server_started_for_another_model_is_not_used(
        good_model: Path, broken_model: Path, examples: Any, tmp_path: Path,
        started_pids: list[int]) -> None:
    from pipeline.components import infra_server_ahead

    infra_server_ahead.start(str(good_model), "candidate")
    blessing = _validate(broken_model, examples, tmp_path)  # the broken one is validated
    assert blessing.get_int_custom_property("blessed") == 0
    assert len(started_pids) == 2 and _gone(started_pids[1])
    infra_server_ahead.stop_unclaimed()
    assert _gone(started_pids[0])


def test_the_run_hook_starts_the_server_after_the_trainer_and_stops_it_unclaimed(
        good_model: Path, tmp_path: Path, started_pids: list[int]) -> None:
    from types import SimpleNamespace

    from pipeline.components.infra_server_ahead import started_after_training
    from pipeline.config import PipelineConfig
    from pipeline.datasets import ResolvedData
    from pipeline.pipeline import create_pipeline
    from tests.datagen import write_png_folder

    folder = str(write_png_folder(tmp_path / "data", n_per_class=4, classes=(0, 1), split_folders=True))
    data = ResolvedData(path=folder, class_names=("zero", "one"), description="test")
    model = standard_artifacts.Model()
    model.uri = str(good_model.parent)
    trained = SimpleNamespace(output_dict={standard_component_specs.MODEL_KEY: [model]})
    for enabled in (False, True):
        config = PipelineConfig(data=folder, infra_validation=enabled, model_name="digits",
                                pipeline_root=str(tmp_path / "root"))
        producers = iv.model_producers(create_pipeline(config, data))
        assert producers == ({"Trainer": "digits"} if enabled else {})
        with started_after_training(producers) as after_launch:
            after_launch("Evaluator", trained)  # not the node that makes the validated model
            after_launch("Trainer", None)  # from the cache: nothing new to validate
            assert started_pids == []
            after_launch("Trainer", trained)
            assert len(started_pids) == int(enabled)
            if enabled:
                assert not _gone(started_pids[0])
    assert len(started_pids) == 1 and _gone(started_pids[0])  # nobody claimed it: stopped


def test_the_executor_refuses_a_docker_or_kubernetes_spec(good_model: Path) -> None:
    from tfx.proto import infra_validator_pb2

    spec = iv.serving_spec("candidate")
    spec.local_docker.SetInParent()
    with pytest.raises(ValueError, match="local_docker"):
        iv.InfraValidatorExecutor()._ValidateOnce(  # noqa: SLF001
            str(good_model), None, spec, infra_validator_pb2.ValidationSpec(), [])  # type: ignore[arg-type]


# -- in the graph (the shared tiny run) -----------------------------------------------------
@pytest.mark.slow
def test_the_tiny_run_infra_validates_then_pushes_the_warmed_model(tiny_pipeline_run: Any) -> None:
    run = tiny_pipeline_run
    summary = run.summary
    assert summary.states["InfraValidator"] == "COMPLETE"
    assert summary.infra_blessed is True and summary.infra_requests >= 1
    assert summary.pushed_version is not None
    pushed = Path(run.serving_dir) / run.model_name / str(summary.pushed_version)
    warm = pushed / "assets.extra" / "tf_serving_warmup_requests"
    assert warm.is_file() and (pushed / "assets.extra" / "dict.tsv").is_file()
    assert "served:        yes" in run.output
    assert "InfraValidator" in run.output  # its progress line, with its seconds
    # the server it used was started when the Trainer finished, while the Evaluator ran
    logs = "".join(p.read_text(errors="replace") for p in (Path(run.root) / "logs").glob("*.log"))
    assert "started after training" in logs
    # MLMD: the run's model carries its InfraBlessing in the lineage the registry reads
    from metastore.pipeline_models import candidate, latest_artifact
    from metastore.store import Store, parse_backend

    store = Store(parse_backend(run.metadata_path))
    model = candidate(store, latest_artifact(store, "Model", run.model_name))
    assert model.infra_blessed is True and model.infra_failure == {}


def test_no_infra_validation_leaves_it_out_of_the_graph(tmp_path: Path) -> None:
    from pipeline.config import PipelineConfig
    from pipeline.datasets import ResolvedData
    from pipeline.pipeline import create_pipeline
    from tests.datagen import write_png_folder

    folder = str(write_png_folder(tmp_path / "data", n_per_class=4, classes=(0, 1), split_folders=True))
    data = ResolvedData(path=folder, class_names=("zero", "one"), description="test")
    ids = {}
    for enabled in (True, False):
        config = PipelineConfig(data=folder, infra_validation=enabled,
                                pipeline_root=str(tmp_path / "root"))
        pipeline = create_pipeline(config, data)
        ids[enabled] = [c.id for c in pipeline.components]
        pusher = next(c for c in pipeline.components if c.id == "Pusher")
        assert ("infra_blessing" in pusher.inputs) is enabled
    assert ids[True].index("Evaluator") < ids[True].index("InfraValidator") < ids[True].index(
        "Pusher")
    assert "InfraValidator" not in ids[False]


def test_the_runner_flag_turns_it_off() -> None:
    from pipeline.cli_options import config_from_options

    assert config_from_options({"infra_validation": False}).infra_validation is False
    assert config_from_options({}).infra_validation is True


# -- where it is shown: mlmodel summary, the report, the console's lineage graph -------------
@pytest.mark.slow
def test_mlmodel_summary_shows_the_infra_blessing(tiny_pipeline_run: Any) -> None:
    from registry.api import open_registry

    run = tiny_pipeline_run
    lineage = open_registry(run.metadata_path, run.serving_dir).summary(run.model_name).lineage
    assert lineage["infra_blessed"] is True and lineage["infra_blessing_artifact_id"]
    assert lineage["infra_failure"] == ""


def test_the_report_and_the_lineage_graph_name_a_failed_infra_validation() -> None:
    from ml_metadata.proto import metadata_store_pb2 as pb

    from metastore.pipeline_models import Candidate, add_output
    from registry.report_data import infra_verdict
    from registry.ui.graph import blessing_word

    blessing = pb.Artifact(type=mlmd.INFRA_BLESSING)
    blessing.custom_properties[mlmd.BLESSED].int_value = 0
    blessing.custom_properties[mlmd.INFRA_FAILURE].string_value = json.dumps(
        {"reason": "the server answered a request with INVALID_ARGUMENT: bad shape",
         "log": ["serving.grpc WARNING boom"], "tries": 2})
    cand = Candidate(model=None)
    assert infra_verdict(cand) == ""
    add_output(cand, blessing)
    assert cand.infra_blessed is False
    verdict = infra_verdict(cand)
    assert verdict.startswith("no: the server answered") and "boom" in verdict
    assert blessing_word(mlmd.INFRA_BLESSING, 0) == " infra failed"
    assert blessing_word(mlmd.INFRA_BLESSING, 1) == " infra-validated"
    assert blessing_word("ModelBlessing", 1) == " blessed"
    assert blessing_word("PushedModel", 1) == ""
