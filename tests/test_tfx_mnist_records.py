"""TFX's own MNIST example records (``image_floats`` in [-0.5, 0.5], ``image_class``) read as-is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasources import readers
from datasources.errors import DataError
from tests.datagen import synthetic_images, write_tfrecord


def _tfx_record(pixels: np.ndarray, label: int) -> bytes:
    """A record as TFX's MNIST example holds it (the benchmark's writer, one definition)."""
    from benchmarks.tfx_example import tfx_example_bytes

    return tfx_example_bytes(pixels, label)


def test_tfx_mnist_example_records_read_as_our_pixels(tmp_path: Path) -> None:
    images = synthetic_images([3, 7], seed=1)
    path = write_tfrecord(tmp_path / "mnist.tfrecord", 2,
                          records=[_tfx_record(images[0], 3), _tfx_record(images[1], 7)])
    items = list(readers.iter_tfrecord(path, 10))
    assert [label for _, _, label in items] == [3, 7]
    np.testing.assert_array_equal(items[0][1], images[0].reshape(28, 28))


def test_tfx_mnist_records_out_of_range_are_named(tmp_path: Path) -> None:
    bad = _tfx_record(np.full((28, 28), 255, np.uint8), 1).replace(b"image_class", b"image_clasz")
    with pytest.raises(DataError, match="lacks feature"):
        readers.parse_example(bad, "x.tfrecord", 10)
    with pytest.raises(DataError, match="must hold 784 floats in"):
        readers.parse_example(_tfx_record(np.zeros((2, 2), np.uint8), 1), "x.tfrecord", 10)
