"""`--data s3://...` against a real S3-compatible server (moto's, on loopback): the layouts and
readers through Beam's FileSystems, clear errors, and the whole pipeline (issue 11)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TINY_HPARAMS, TinyRun
from tests.s3_server import running_s3, s3_environment, upload_tree

BUCKET = "mnist"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with running_s3(log) as endpoint, s3_environment(endpoint):
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield endpoint


@pytest.fixture(scope="module")
def remote_tiny(s3: str, tiny_pipeline_run: TinyRun) -> str:
    """The session's tiny run's own PNG tree, uploaded as the seed walkthrough does."""
    count = upload_tree(Path(tiny_pipeline_run.data_path), BUCKET, "mnist_png")
    assert count > 100
    return f"s3://{BUCKET}/mnist_png"


def test_layout_detection_on_s3_matches_the_local_folder(remote_tiny: str,
                                                         tiny_pipeline_run: TinyRun) -> None:
    from datasources.layouts import detect_layout

    remote = detect_layout(remote_tiny)
    local = detect_layout(tiny_pipeline_run.data_path)
    assert remote.kind == local.kind == "image_folder_split"
    assert remote.root == remote_tiny and remote.splits == local.splits
    assert remote.num_examples == local.num_examples and remote.label_names == local.label_names


def test_the_readers_give_the_same_examples(remote_tiny: str, tiny_pipeline_run: TinyRun) -> None:
    from datasources.layouts import detect_layout, layout_of

    for root in (remote_tiny, tiny_pipeline_run.data_path):
        layout = detect_layout(root)
        names = list(layout.label_names or ())
        reader = layout_of(layout.kind)
        items = reader.list_items(layout.root, layout.splits["eval"], names, None, 20)
        examples = [e for item in items for e in reader.read(item, layout.root, names, None, 20)]
        if root == remote_tiny:
            remote_examples = examples
    assert remote_examples == examples and len(examples) == 40


@pytest.mark.parametrize("uri, expected", [
    ("s3://no-such-bucket/mnist_png", "bucket 'no-such-bucket' does not exist"),
    (f"s3://{BUCKET}/nothing_here", "nothing is stored under this prefix"),
])
def test_bad_remote_input_gets_a_clear_error(s3: str, uri: str, expected: str) -> None:
    from datasources.layouts import detect_layout
    from datasources.readers import DataError

    with pytest.raises(DataError, match=expected):
        detect_layout(uri)


def test_a_refused_listing_says_to_check_the_credentials(s3: str, tmp_path: Path) -> None:
    """A store that refuses our key (moto with its credential checks on after the set-up)."""
    import boto3

    from datasources.layouts import detect_layout
    from datasources.readers import DataError

    with running_s3(tmp_path / "locked.log", free_actions=3) as endpoint, \
            s3_environment(endpoint):
        client = boto3.client("s3")
        client.create_bucket(Bucket="locked")  # free action 2 (the probe was 1)
        client.put_object(Bucket="locked", Key="mnist_png/0/a.png", Body=b"png")  # 3
        with pytest.raises(DataError, match="access to bucket 'locked' is denied; check the "
                                            "credentials"):
            detect_layout("s3://locked/mnist_png")


def test_a_corrupt_object_is_named(s3: str, tmp_path: Path) -> None:
    from datasources.layouts import detect_layout, layout_of
    from datasources.readers import DataError
    from tests.datagen import write_png_folder

    folder = write_png_folder(tmp_path / "data", n_per_class=2)
    (folder / "3" / "broken.png").write_bytes(b"not a png at all")
    upload_tree(folder, BUCKET, "corrupt")
    layout = detect_layout(f"s3://{BUCKET}/corrupt")
    reader = layout_of(layout.kind)
    names = list(layout.label_names or ())
    items = reader.list_items(layout.root, layout.splits["train"], names, None, 20)
    # Remote images come in chunks (read concurrently): the chunk holding the broken file.
    broken = next(chunk for chunk in items if any(rel.endswith("broken.png") for rel, _ in chunk))
    with pytest.raises(DataError, match=f"s3://{BUCKET}/corrupt/3/broken.png"):
        list(reader.read(broken, layout.root, names, None, 20))


def test_the_cli_accepts_a_uri_and_still_checks_local_paths(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipeline.local_runner import main

    missing = CliRunner().invoke(main, ["--data", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    from pipeline.config import DataLocation

    assert DataLocation().convert("s3://bucket/prefix", None, None) == "s3://bucket/prefix"


@pytest.mark.slow
def test_the_whole_pipeline_on_s3_blesses_pushes_and_sees_the_same_data(
        remote_tiny: str, s3: str, tiny_pipeline_run: TinyRun, tmp_path: Path) -> None:
    from pipeline.config import PipelineConfig
    from pipeline.run import run_pipeline
    from registry.report_data import read_statistics

    config = PipelineConfig(
        model_name=tiny_pipeline_run.model_name, data=remote_tiny,
        pipeline_root=str(tmp_path / "root"), metadata_path=str(tmp_path / "m.sqlite"),
        serving_dir=str(tmp_path / "serving"), log_dir=str(tmp_path / "logs"),
        hparams=TINY_HPARAMS, accuracy_threshold=0.5, max_accuracy_drop=0.05, s3_endpoint_url=s3)
    summary = run_pipeline(config)
    assert summary.blessed and summary.pushed_version == 1, summary
    assert (tmp_path / "serving" / tiny_pipeline_run.model_name / "1" / "saved_model.pb").is_file()

    def statistics(root: Path) -> dict[str, tuple[int, float]]:
        # The first StatisticsGen output under the root (the session's run made it first;
        # later tests may add runs on other data).
        stats_dir = min((p for p in root.rglob("StatisticsGen/statistics/*")
                         if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
        found = read_statistics(str(stats_dir))
        return {split: (int(data.num_examples),
                        next(f.num_stats.mean for f in data.features if f.path.step == ["label"]))
                for split, data in found.items()}

    remote, local = statistics(tmp_path / "root"), statistics(Path(tiny_pipeline_run.pipeline_root))
    assert set(remote) == {"train", "eval"} and remote == local


def test_the_pipeline_root_takes_the_schemes_tf_io_gfile_has_here() -> None:
    from contracts.runtime import configure_tensorflow

    configure_tensorflow()
    import tensorflow as tf

    from pipeline.config import PIPELINE_ROOT_SCHEMES, PipelineConfig

    with pytest.raises(tf.errors.UnimplementedError):
        tf.io.gfile.exists("s3://bucket/root")  # why s3:// is refused for the pipeline root
    assert PIPELINE_ROOT_SCHEMES == ("gs",)
    try:
        tf.io.gfile.exists("gs://bucket/root")  # implemented; fails here only for want of network
    except tf.errors.UnimplementedError:
        pytest.fail("gs:// should be a tf.io.gfile filesystem in this pin set")
    except tf.errors.OpError:
        pass
    with pytest.raises(ValueError, match="no s3:// filesystem"):
        PipelineConfig(pipeline_root="s3://bucket/root")
    assert PipelineConfig(pipeline_root="gs://bucket/root").pipeline_root_uri == "gs://bucket/root"


def test_the_kubeflow_spec_carries_the_data_uri_and_the_image(remote_tiny: str, s3: str,
                                                              tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "spec.json"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.kubeflow_runner", "--data", remote_tiny,
         "--pipeline-root", str(tmp_path / "root"), "--output", str(out),
         "--image", "registry.example.com/mnist-tfx:1"],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert result.returncode == 0, result.stderr[-2000:]
    text = out.read_text()
    spec = json.loads(text)
    assert "registry.example.com/mnist-tfx:1" in text
    inputs = spec["pipelineSpec"]["root"]["dag"]["tasks"]["ExampleGen"]["inputs"]["parameters"]
    assert inputs["input_base"]["runtimeValue"]["constantValue"]["stringValue"] == remote_tiny
    assert f"--s3_endpoint_url={s3}" in text  # the store's endpoint reaches the components' Beam
    hook = spec["pipelineSpec"]["deploymentSpec"]["executors"]["ExampleGen_executor"][
        "container"]["lifecycle"]["preCacheCheck"]
    assert hook["command"] == ["python", "-m", "pipeline.kfp_example_gen_driver"]
    assert f"--s3_endpoint_url={s3}" in hook["args"]  # the driver's listing reaches the store


def _driver_invocation(input_base: str, output_file: Path) -> str:
    """The ``{{$}}`` KFP gives ExampleGen's pre-cache-check hook: an ExecutorInput in JSON, with
    the split patterns our ExampleGen compiles for this input."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2 import compiler_utils
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts

    from datasources.layouts import detect_layout

    invocation = pipeline_spec_pb2.ExecutorInput()
    invocation.outputs.output_file = str(output_file)
    layout = detect_layout(input_base)
    splits = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name=name, pattern=layout.splits[name])
        for name in ("train", "eval")])
    params = invocation.inputs.parameters  # the compiled spec is schema 2.0.0: "parameters"
    params["input_base"].string_value = input_base
    params["input_config"].string_value = json_format.MessageToJson(splits)
    params["output_config"].string_value = "{}"
    invocation.outputs.artifacts["examples"].artifacts.append(
        pipeline_spec_pb2.RuntimeArtifact(type=pipeline_spec_pb2.ArtifactTypeSchema(
            instance_schema=compiler_utils.get_artifact_schema(standard_artifacts.Examples))))
    return json_format.MessageToJson(invocation)


def test_the_kubeflow_driver_hook_fingerprints_s3_data_where_tfxs_own_cannot(
        remote_tiny: str, s3: str, tmp_path: Path) -> None:
    """Run the hook as KFP's container would, on the s3:// data: TFX's own driver fails to list
    it (tf.io.gfile has no s3:// here); ours writes the span and the input fingerprint."""
    import os
    import subprocess
    import sys

    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    from pipeline.kfp_example_gen_driver import TFX_DRIVER_MODULE

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    results = {}
    for module in (TFX_DRIVER_MODULE, "pipeline.kfp_example_gen_driver"):
        output = tmp_path / module / "output_metadata.json"
        results[module] = subprocess.run(
            [sys.executable, "-m", module, "--json_serialized_invocation_args",
             _driver_invocation(remote_tiny, output), f"--s3_endpoint_url={s3}",
             "--direct_running_mode=multi_processing"],
            cwd=root, env=env, capture_output=True, text=True, timeout=300)
    theirs = results[TFX_DRIVER_MODULE]
    assert theirs.returncode != 0, theirs.stdout[-2000:]  # why the hook is replaced
    assert "File system scheme 's3' not implemented" in theirs.stderr, theirs.stderr[-3000:]
    ours = results["pipeline.kfp_example_gen_driver"]
    assert ours.returncode == 0, ours.stderr[-3000:]
    metadata = pipeline_spec_pb2.ExecutorOutput()
    json_format.Parse((tmp_path / "pipeline.kfp_example_gen_driver" / "output_metadata.json")
                      .read_text(), metadata, ignore_unknown_fields=True)
    fingerprint = metadata.parameter_values["input_fingerprint"].string_value
    assert metadata.parameter_values["span"].number_value == 0
    assert fingerprint.startswith("split:train,num_files:") and "split:eval," in fingerprint
    assert "names_and_sizes_sha256:" in fingerprint and "num_files:0," not in fingerprint


def test_local_data_keeps_tfxs_own_kubeflow_driver() -> None:
    from pipeline.kfp_example_gen_driver import uses_storage_driver

    assert not uses_storage_driver("/data/mnist_png")
    assert not uses_storage_driver("gs://bucket/mnist_png")  # tf.io.gfile lists gs:// itself
    assert uses_storage_driver("s3://bucket/mnist_png")


def test_the_readme_boto3_upload_snippet_works_as_written(s3: str, tmp_path: Path) -> None:
    """The README's rewrite of the seed's upload loop (the endpoint and bucket replaced)."""
    import re

    import boto3

    from tests.datagen import write_png_folder

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"upload loop, with boto3:\n\n```python\n(.*?)```", readme, re.S)
    assert block, "the README's boto3 upload snippet is missing"
    code = block.group(1).replace("http://127.0.0.1:9000", s3)
    write_png_folder(tmp_path / "mnist_png", n_per_class=2, split_folders=True)
    boto3.client("s3").create_bucket(Bucket="snippet")
    exec_globals: dict[str, object] = {}
    import os

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code.replace('"mnist", f"mnist_png/', '"snippet", f"mnist_png/'), "README",
                     "exec"), exec_globals)
    finally:
        os.chdir(here)
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="snippet")["Contents"]]
    assert len(keys) == len(list((tmp_path / "mnist_png").rglob("*.png"))) and \
        all(k.startswith("mnist_png/") for k in keys)


def test_concurrent_reads_stay_within_the_clients_connection_pool(
        s3: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """boto3 keeps ``max_pool_connections`` (10) connections per client; more reading threads
    than that each opened a connection and threw it away after one GET ("Connection pool is
    full, discarding connection"): a new TCP (and, against a real store, TLS) handshake per
    object, and a warning per object in the run's log."""
    import logging

    from datasources import storage

    folder = tmp_path / "objects"
    folder.mkdir()
    contents = [bytes([i]) * (100 + i) for i in range(48)]
    for i, data in enumerate(contents):
        (folder / f"{i:02d}.bin").write_bytes(data)
    upload_tree(folder, BUCKET, "pool")
    paths = [f"s3://{BUCKET}/pool/{i:02d}.bin" for i in range(len(contents))]
    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        assert storage.read_many(paths) == contents
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


@pytest.fixture
def fresh_storage_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beam's filesystem options and our S3 client as they were, once the test is over."""
    from apache_beam.io.filesystems import FileSystems

    from datasources import storage

    monkeypatch.setattr(storage, "_options", None)
    monkeypatch.setattr(storage, "_s3", None)
    monkeypatch.setattr(FileSystems, "_pipeline_options", None)


def test_the_endpoint_flag_alone_reaches_the_listing_and_its_errors(
        s3: str, remote_tiny: str, monkeypatch: pytest.MonkeyPatch,
        fresh_storage_options: None) -> None:
    """``--s3-endpoint-url`` without AWS_ENDPOINT_URL: the listing and the diagnosis of a bad
    bucket both go to that endpoint (the diagnosis once asked AWS itself)."""
    from datasources import storage
    from datasources.layouts import detect_layout
    from datasources.readers import DataError

    monkeypatch.delenv("AWS_ENDPOINT_URL")
    storage.forget()
    storage.configure([f"--s3_endpoint_url={s3}"])
    assert detect_layout(remote_tiny).kind == "image_folder_split"
    with pytest.raises(DataError, match=f"bucket 'elsewhere' does not exist \\(or not at this "
                                        f"endpoint: {s3}\\)"):
        detect_layout("s3://elsewhere/mnist_png")


def _no_beam_retries(caplog: pytest.LogCaptureFixture) -> bool:
    return not [r for r in caplog.records if r.name.startswith("apache_beam.utils.retry")]


def test_missing_credentials_stop_at_once_with_what_to_set(
        s3: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, fresh_storage_options: None) -> None:
    """No key anywhere: one clear line, not a minute of Beam retrying the listing."""
    import logging

    from datasources.layouts import detect_layout
    from datasources.readers import DataError

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE",
                 "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with caplog.at_level(logging.WARNING), \
            pytest.raises(DataError, match="no credentials for the store: set AWS_ACCESS_KEY_ID"):
        detect_layout(f"s3://{BUCKET}/without_credentials")
    assert _no_beam_retries(caplog)


def test_an_unreachable_endpoint_is_named_without_retrying_for_minutes(
        s3: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        fresh_storage_options: None) -> None:
    import logging

    from datasources.layouts import detect_layout
    from datasources.readers import DataError
    from serving.server import free_port

    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    with caplog.at_level(logging.WARNING), \
            pytest.raises(DataError, match=f"cannot reach the store at {closed}"):
        detect_layout(f"s3://{BUCKET}/unreachable")
    assert _no_beam_retries(caplog)


def test_the_store_is_asked_at_the_endpoint_beam_was_given(
        s3: str, monkeypatch: pytest.MonkeyPatch, fresh_storage_options: None) -> None:
    """In an executor, Beam's own FileSystems options carry the endpoint (``configure`` never
    ran there): the check before the listing asks that endpoint, as the reads do."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    from datasources.layouts import detect_layout
    from datasources.readers import DataError

    monkeypatch.delenv("AWS_ENDPOINT_URL")
    FileSystems.set_options(PipelineOptions([f"--s3_endpoint_url={s3}"]))
    with pytest.raises(DataError, match=f"not at this endpoint: {s3}"):
        detect_layout("s3://not-here/mnist_png")
