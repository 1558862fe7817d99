"""small_data_bench: TFX's MNIST records read back and written, missing inputs say how to get them,
TFX's example scored through serialized tf.Examples, fashion-full only when named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import small_data_bench as bench
from benchmarks import tfx_example
from tests.datagen import synthetic_images, write_tfrecord
from tests.test_tfx_mnist_records import _tfx_record


def test_tfx_records_read_as_pixels_and_labels(tmp_path: Path) -> None:
    images = synthetic_images([4, 2, 9], seed=3)
    path = write_tfrecord(tmp_path / "mnist.tfrecord", 3,
                          records=[_tfx_record(i, label) for i, label in zip(images, [4, 2, 9],
                                                                               strict=True)])
    x, y = bench.read_tfx_records(path)
    assert y.tolist() == [4, 2, 9]
    np.testing.assert_array_equal(x, np.stack(images).reshape(3, 28, 28))


def test_missing_mnist_files_say_where_to_get_them(tmp_path: Path) -> None:
    args = bench.parse_args(["--mnist-records", str(tmp_path / "none.tfrecord"),
                             "--mnist-test", str(tmp_path)])
    with pytest.raises(SystemExit) as raised:
        bench.check_inputs(args, ["handwriting"])
    message = str(raised.value)
    assert "github.com/tensorflow/tfx" in message and "--mnist-records" in message
    assert "t10k-images-idx3-ubyte.gz" in message and "--mnist-test" in message
    for name in bench.MNIST_TEST_FILES:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "none.tfrecord").write_bytes(b"")
    bench.check_inputs(args, ["handwriting", "default"])  # all there: no complaint


def test_the_environment_names_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_TFX_RECORDS", str(tmp_path / "r.tfrecord"))
    monkeypatch.setenv("MNIST_TEST_DIR", str(tmp_path))
    args = bench.parse_args([])
    assert (args.mnist_records, args.mnist_test) == (tmp_path / "r.tfrecord", tmp_path)


def test_by_default_only_datasets_whose_inputs_are_here(tmp_path: Path, capsys) -> None:
    args = bench.parse_args(["--mnist-records", str(tmp_path / "none.tfrecord"),
                             "--mnist-test", str(tmp_path)])
    chosen = bench.chosen_datasets(args)
    assert "handwriting" not in chosen and "default" not in chosen
    assert "skipping handwriting" in capsys.readouterr().err
    assert bench.chosen_datasets(bench.parse_args(["--datasets", "default"])) == ["default"]


def test_tfx_format_writer_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, size=(7, 28, 28)).astype(np.uint8)
    x[0] = 0
    x[1] = 255
    y = np.array([0, 9, 3, 3, 1, 7, 5])
    path = bench.write_tfx_records(tmp_path / "data" / "train.tfrecord", x, y)
    back_x, back_y = bench.read_tfx_records(path)
    np.testing.assert_array_equal(back_x, x)
    assert back_y.tolist() == y.tolist()


def test_examples_for_tfx_models_hold_784_floats() -> None:
    from tensorflow.core.example import example_pb2

    image = np.arange(784).reshape(28, 28) % 256
    example = example_pb2.Example.FromString(tfx_example.tfx_example_bytes(image.astype(np.uint8)))
    floats = example.features.feature["image_floats"].float_list.value
    assert len(floats) == 784 and "image_class" not in example.features.feature
    assert min(floats) == -0.5 and max(floats) == 0.5  # TFX's format: pixel/255 - 0.5
    assert floats[1] == pytest.approx(1 / 255 - 0.5)


def test_the_example_model_is_scored_through_serialized_examples(tmp_path: Path) -> None:
    """A stand-in for TFX's model: serving_default parses 784 image_floats, predicts pixel 0 % 10."""
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            spec = {"image_floats": tf.io.FixedLenFeature([784], tf.float32)}
            floats = tf.io.parse_example(examples, spec)["image_floats"]
            first = tf.cast(tf.round((floats[:, 0] + 0.5) * 255.0), tf.int32)
            return {"output_0": tf.one_hot(first % 10, 10)}

    model = Model()
    tf.saved_model.save(model, str(tmp_path / "m"), signatures={"serving_default": model.serve})
    xt = np.zeros((4, 28, 28), np.uint8)
    xt[:, 0, 0] = [3, 17, 250, 40]
    assert tfx_example.score_example_model(str(tmp_path / "m"), xt, [3, 7, 0, 1]) == 0.75


def test_fashion_full_runs_only_when_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "FASHION", tmp_path)  # Fashion-MNIST "installed"
    chosen = bench.chosen_datasets(bench.parse_args([]))
    assert "fashion" in chosen and "fashion-full" not in chosen
    args = bench.parse_args(["--datasets", "fashion-full,handwriting"])
    assert bench.chosen_datasets(args) == ["fashion-full", "handwriting"]
    monkeypatch.setattr(bench, "FASHION", tmp_path / "absent")
    with pytest.raises(SystemExit, match="dataset-fashion-mnist"):
        bench.check_inputs(args, ["fashion-full"])


def test_no_tfx_example_flag() -> None:
    assert bench.parse_args([]).no_tfx_example is False
    args = bench.parse_args(["--no-tfx-example", "--datasets", "handwriting", "--repeats", "2"])
    assert (args.no_tfx_example, args.datasets, args.repeats) == (True, "handwriting", 2)


def test_the_report_compares_with_tfx_example(capsys: pytest.CaptureFixture[str]) -> None:
    example = {"test_accuracy": 0.87, "eval_accuracy": 0.83, "pushed": True, "blessed": True,
               "end_to_end_s": 125.0, "ours_over_tfx": 0.4,
               "components_s": {"ImportExampleGen": 14.0, "Trainer.mnist": 29.5}}
    runs = [{"pipeline": {"test_accuracy": 0.95, "eval_accuracy": 0.94, "blessed": True,
                          "end_to_end_s": 50.0, "training": {}},
             "keras": None, "tfx_example": example}]
    bench.report("fashion-full", runs, bench.parse_args([]))
    out = capsys.readouterr().out
    assert "TFX example test accuracy         0.8700" in out
    assert "0.40x (target <= 1.2x: met)" in out and "+8.0 points" in out
    assert "Trainer.mnist 30 s" in out and "plain Keras" not in out
    assert "pipeline extra flags" not in out  # default flags: nothing to say
    bench.report("fashion-full", runs, bench.parse_args(["--pipeline-args", "--precision float32"]))
    assert "pipeline extra flags              --precision float32" in capsys.readouterr().out


def test_pipeline_args_reach_the_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    seen: list[list[str]] = []

    def fake_run(args: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        seen.append(args)
        return subprocess.CompletedProcess(args, 0, "ok", "")

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    bench.run_pipeline(tmp_path / "data", tmp_path, "small", ("--precision", "float32"))
    assert seen[0][-2:] == ["--precision", "float32"] and "--data" in seen[0]
    assert bench.parse_args([]).pipeline_args == ""


def test_a_run_of_one_dataset_keeps_the_others_figures(tmp_path: Path) -> None:
    import json

    path = tmp_path / "out" / "small_data_bench.json"
    bench.save_results(path, {"fashion": [{"test_accuracy": 0.84}],
                              "handwriting": [{"test_accuracy": 0.97}]}, 100)
    bench.save_results(path, {"handwriting": [{"test_accuracy": 0.98}]}, 100)
    saved = json.loads(path.read_text())
    assert saved["results"] == {"fashion": [{"test_accuracy": 0.84}],
                                "handwriting": [{"test_accuracy": 0.98}]}
    assert set(saved["measured"]) == {"fashion", "handwriting"}
    assert saved["measured"]["handwriting"]["per_class"] == 100
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
