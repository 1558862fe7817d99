"""modules/augmentation.py: the composed affine transform resamples once and is exact where it
should be (identity, quarter turns, whole-pixel shifts, zoom about the centre)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import modules  # noqa: F401


def _one(image: np.ndarray, angle: float = 0.0, zoom: float = 1.0, zoom_x: float | None = None,
         shift_x: float = 0.0, shift_y: float = 0.0, shear: float | None = None) -> np.ndarray:
    import tensorflow as tf

    from modules.augmentation import affine_transforms, transform

    def col(value: float) -> tf.Tensor:
        return tf.constant([value], tf.float32)

    h, w = image.shape
    matrix = affine_transforms(col(angle), col(zoom), col(zoom if zoom_x is None else zoom_x),
                               col(shift_x), col(shift_y), h, w,
                               None if shear is None else col(shear))
    return transform(tf.constant(image[None, :, :, None], tf.float32), matrix).numpy()[0, :, :, 0]


def _glyph() -> np.ndarray:
    image = np.zeros((28, 28), np.float32)
    image[6:20, 9:12] = 1.0  # a thick vertical bar
    image[6:9, 9:19] = 0.5  # and a lighter flag to its right: no symmetry to hide a mistake
    return image


def test_identity_quarter_turn_and_whole_pixel_shift_are_exact() -> None:
    image = _glyph()
    np.testing.assert_array_equal(_one(image), image)
    turned = _one(image, angle=math.pi / 2)
    assert any(np.allclose(turned, np.rot90(image, k), atol=1e-5) for k in (1, -1))
    shifted = _one(image, shift_x=3.0, shift_y=-2.0)
    expected = np.zeros_like(image)
    expected[2:, :25] = image[:-2, 3:]  # content moves 3 px left and 2 px down, zeros fill in
    right = np.zeros_like(image)
    right[:26, 3:] = image[2:, :25]  # or the opposite way: the sign is a convention
    assert np.allclose(shifted, expected) or np.allclose(shifted, right)


def test_zoom_scales_about_the_centre_and_width_can_differ() -> None:
    image = np.zeros((28, 28), np.float32)
    image[4:24, 4:24] = 1.0  # a 20x20 centred square

    def box(x: np.ndarray) -> tuple[int, int]:
        rows, cols = np.nonzero(x > 0.5)
        return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)

    assert box(_one(image, zoom=2.0)) == (10, 10)  # above 1: the content shrinks
    assert box(_one(image, zoom=1.0, zoom_x=2.0)) == (20, 10)
    small = _one(image, zoom=2.0)
    rows, cols = np.nonzero(small > 0.5)
    assert rows.mean() == pytest.approx(13.5, abs=0.5) and cols.mean() == pytest.approx(13.5, abs=0.5)


def test_shear_slants_a_vertical_bar_about_the_centre() -> None:
    image = np.zeros((28, 28), np.float32)
    image[4:24, 13:15] = 1.0  # a vertical bar through the centre, 20 rows tall

    def centre_column(x: np.ndarray, rows: slice) -> float:
        part = x[rows]
        return float((part * np.arange(28)).sum() / part.sum())

    np.testing.assert_array_equal(_one(image, shear=0.0), image)
    slanted = _one(image, shear=0.5)
    top, bottom = centre_column(slanted, slice(4, 8)), centre_column(slanted, slice(20, 24))
    # 16 rows apart, half a column per row: 8 columns between the ends, either way round
    assert abs(top - bottom) == pytest.approx(8.0, abs=0.6)
    assert centre_column(slanted, slice(12, 16)) == pytest.approx(13.5, abs=0.6)  # centre stays


def test_random_affine_is_the_identity_when_not_training_and_varies_per_image() -> None:
    import tensorflow as tf

    from modules.augmentation import AFFINE_ROTATION, RandomAffine

    layer = RandomAffine(AFFINE_ROTATION, 0.1, 0.1, shear=0.3, name="aug_affine")
    batch = np.repeat(_glyph()[None, :, :, None], 8, axis=0)
    np.testing.assert_array_equal(layer(batch, training=False).numpy(), batch)
    tf.keras.utils.set_random_seed(0)
    out = layer(batch, training=True).numpy()
    assert out.shape == batch.shape and not np.allclose(out, batch)
    assert len({out[i].tobytes() for i in range(8)}) == 8  # each image its own transform
    # small transforms keep the ink in the frame: about the same amount of it (zoom +-10%)
    assert out.sum(axis=(1, 2, 3)) == pytest.approx(batch[0].sum(), rel=0.3)
    copy = RandomAffine.from_config(layer.get_config())
    assert (copy.rotation, copy.zoom, copy.shift, copy.shear) == (AFFINE_ROTATION, 0.1, 0.1, 0.3)


def test_one_resampling_keeps_strokes_sharper_than_the_keras_chain() -> None:
    """The reason the layer exists: the chain of three Keras layers resamples three times."""
    import tensorflow as tf

    from modules.augmentation import RandomAffine

    tf.keras.utils.set_random_seed(1)
    batch = np.repeat(_glyph()[None, :, :, None], 64, axis=0)
    layers = tf.keras.layers
    chain = tf.keras.Sequential([layers.RandomRotation(10 / 360, fill_mode="constant"),
                                 layers.RandomZoom(0.1, fill_mode="constant"),
                                 layers.RandomTranslation(0.1, 0.1, fill_mode="constant")])
    once = RandomAffine(10 / 360, 0.1, 0.1)

    def sharpness(x: np.ndarray) -> float:  # mean squared gradient: blur lowers it
        return float(np.mean(np.diff(x, axis=1) ** 2) + np.mean(np.diff(x, axis=2) ** 2))

    assert sharpness(once(batch, training=True).numpy()) > 1.1 * sharpness(
        chain(batch, training=True).numpy())


def test_unknown_policy_is_refused() -> None:
    from modules.augmentation import augmentation_layers

    assert [layer.name for layer in augmentation_layers("affine")] == ["aug_affine"]
    assert [layer.name for layer in augmentation_layers("shift")] == ["aug_shift"]
    with pytest.raises(ValueError, match="unknown augmentation 'rotate'"):
        augmentation_layers("rotate")
