"""The cheap image features both sides of ``mlmodel monitor`` are described by, and its small
parsers (no TensorFlow, no fixtures)."""

from __future__ import annotations

import numpy as np
import pytest

from datasources.image_features import FEATURE_NAMES, image_features
from metastore.errors import InputError


def _square(top: int, left: int, size: int = 6, value: int = 255) -> np.ndarray:
    image = np.zeros((28, 28), np.uint8)
    image[top:top + size, left:left + size] = value
    return image


def test_features_of_a_known_square() -> None:
    got = image_features(np.stack([_square(0, 0), _square(22, 22)]))
    assert set(got) == set(FEATURE_NAMES)
    assert got["mean_intensity"][0] == pytest.approx(36 / 784)
    assert got["ink_fraction"][0] == pytest.approx(36 / 784)
    assert got["bbox_width"][0] == got["bbox_height"][0] == pytest.approx(6 / 28)
    assert got["center_of_mass_x"][0] == pytest.approx(2.5 / 27)  # columns 0..5 of 0..27
    assert got["center_of_mass_y"][1] == pytest.approx(24.5 / 27)


def test_inverting_and_moving_change_the_right_features() -> None:
    image = _square(5, 5)
    base = image_features(image[None])
    inverted = image_features((255 - image)[None])
    assert inverted["mean_intensity"][0] > 0.9 > 0.1 > base["mean_intensity"][0]
    assert inverted["bbox_width"][0] == 1.0  # the background is now ink
    shifted = image_features(np.roll(image, 10, axis=1)[None])
    assert shifted["center_of_mass_x"][0] - base["center_of_mass_x"][0] == pytest.approx(10 / 27)
    assert shifted["center_of_mass_y"][0] == pytest.approx(base["center_of_mass_y"][0])
    tall = np.zeros((28, 28), np.uint8)
    tall[2:26, 12:16] = 255
    rotated = image_features(np.stack([tall, np.rot90(tall).copy()]))
    assert rotated["bbox_height"][0] == rotated["bbox_width"][1] == pytest.approx(24 / 28)
    assert rotated["bbox_width"][0] == rotated["bbox_height"][1] == pytest.approx(4 / 28)


def test_blank_images_and_float_input() -> None:
    blank = image_features(np.zeros((1, 28, 28), np.uint8))
    assert blank["center_of_mass_x"][0] == blank["center_of_mass_y"][0] == 0.5
    assert blank["bbox_width"][0] == blank["ink_fraction"][0] == 0.0
    image = _square(3, 9)[None]
    as_floats = image_features((image.astype(np.float32) / 255.0)[..., None])  # [n, 28, 28, 1]
    for name, values in image_features(image).items():
        assert as_floats[name][0] == pytest.approx(values[0]), name
    with pytest.raises(ValueError, match="shape"):
        image_features(np.zeros((28, 28)))


def test_since_and_threshold_parsing() -> None:
    from registry.monitor import DEFAULT_THRESHOLDS, parse_thresholds
    from registry.monitor_capture import parse_since

    assert parse_since("24h") == 86400 and parse_since("30m") == 1800
    assert parse_since("7d") == 7 * 86400 and parse_since("90") == 90 and parse_since("") is None
    for bad in ("soon", "-1h", "0s"):
        with pytest.raises(InputError, match="--since"):
            parse_since(bad)
    set_ = parse_thresholds(["mean_intensity=0.05", "predicted_class=0.5"])
    assert set_["mean_intensity"] == 0.05 and set_["predicted_class"] == 0.5
    assert set_["bbox_width"] == DEFAULT_THRESHOLDS["bbox_width"]
    for bad, why in (("mean_intensity=x", "feature=number"), ("mean_intensity=2", "between"),
                     ("colour=0.1", "unknown feature")):
        with pytest.raises(InputError, match=why):
            parse_thresholds([bad])


def test_export_names_are_stable_and_safe() -> None:
    from registry.export_captured import _file_name

    name = _file_name(3, "capture-20261202T110300-25554-000001.tfrecord#17:2", "t-shirt/top",
                      0.4567)
    assert name == "v3-20261202T110300-25554-000001-17-2-t-shirt_top-0.457.png"
    assert _file_name(3, "capture-20261202T110300-25554-000001.tfrecord#17", "seven", 0.9) \
        == "v3-20261202T110300-25554-000001-17-0-seven-0.900.png"
