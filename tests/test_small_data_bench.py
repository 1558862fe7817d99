"""small_data_bench: TFX's MNIST records read back, and missing inputs say how to get them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import small_data_bench as bench
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
