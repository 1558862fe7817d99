"""The random transforms of the training images, active only while training (identity when
serving): ``augmentation_layers(policy)`` for the policy ``modules/budget.py`` picks.

* "shift": up to about one pixel (Keras' ``RandomTranslation``): for images that fill the frame
  (Fashion-MNIST), where rotation and zoom cost points.
* "affine": what handwriting needs: rotation +-10 degrees, zoom +-10%, a slant (horizontal
  shear) of +-0.3 and shifts +-10%, composed into **one** transform per image and resampled
  once (``RandomAffine``). The slant is what people's handwriting varies in most and the
  rotation does not cover.

Why ``RandomAffine`` is written here rather than chaining Keras' ``RandomRotation``,
``RandomZoom`` and ``RandomTranslation``: each of those resamples the image bilinearly, so the
chain blurred every training image three times while the served images are never resampled. The
model learned from strokes softer than the ones it then reads. Composing the three into one
matrix (the same ``ImageProjectiveTransformV3`` op the Keras layers call) resamples once and
costs one op instead of three. Keras 2 has no composed random-affine layer; KerasCV's is not a
dependency of this stack.

The measurements behind each choice are in docs/training.md ("One resampling for affine
augmentation", "A random slant"); ``benchmarks/recipe_trial.py --augmentations
default,no-slant,keras-chain`` reruns them.
"""

from __future__ import annotations

from contracts.runtime import configure_tensorflow

configure_tensorflow()  # Keras 2 before TensorFlow is imported (see contracts/runtime.py)

import math
from typing import Any

import tensorflow as tf

SHIFT_FRACTION = 0.04  # of the image size: about one pixel of 28
AFFINE_ROTATION = 10.0 / 360.0  # a fraction of a full turn
AFFINE_ZOOM = 0.10
AFFINE_SHIFT = 0.10
AFFINE_SHEAR = 0.30  # x moves by up to 0.3 of y (about 17 degrees of slant), either way


def affine_transforms(angles: tf.Tensor, zoom_y: tf.Tensor, zoom_x: tf.Tensor,
                      shift_x: tf.Tensor, shift_y: tf.Tensor, height: tf.Tensor,
                      width: tf.Tensor, shear: tf.Tensor | None = None) -> tf.Tensor:
    """Per-image [N, 8] transforms for ``ImageProjectiveTransformV3``: where each output pixel
    reads the input. Scaling by ``zoom_*`` (above 1: the content shrinks), a horizontal shear
    (``shear``: x moves by that share of y) and a rotation by ``angles`` (radians), all about
    the image centre, then a shift by ``shift_*`` pixels."""
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    cos, sin = tf.cos(angles), tf.sin(angles)
    zeros = tf.zeros_like(angles)
    k = zeros if shear is None else shear
    # rotation @ [[1, k], [0, 1]] @ diag(zoom_x, zoom_y)
    a0, a1 = cos * zoom_x, (cos * k - sin) * zoom_y
    b0, b1 = sin * zoom_x, (sin * k + cos) * zoom_y
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    a2 = cx - a0 * cx - a1 * cy - shift_x
    b2 = cy - b0 * cx - b1 * cy - shift_y
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def transform(images: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
    """``images`` [N, H, W, C] resampled once through ``transforms`` [N, 8]; outside is 0."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")


class RandomAffine(tf.keras.layers.Layer):
    """Random rotation (``rotation``: a fraction of a full turn, either way), zoom (``zoom``:
    +- that share, the same for both sides: the aspect ratio is kept), shear
    (``shear``: a slant of +- that share) and shift (``shift``: +- that share of each side) of
    every training image, in one resampling. The identity when not training."""

    def __init__(self, rotation: float, zoom: float, shift: float, shear: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rotation, self.zoom, self.shift = float(rotation), float(zoom), float(shift)
        self.shear = float(shear)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if not training:
            return inputs
        shape = tf.shape(inputs)
        n, height, width = shape[0], shape[1], shape[2]

        def uniform(half_range: float) -> tf.Tensor:
            return tf.random.uniform([n], -half_range, half_range)

        zoom = 1.0 + uniform(self.zoom)
        transforms = affine_transforms(
            uniform(self.rotation * 2.0 * math.pi), zoom, zoom,
            uniform(self.shift) * tf.cast(width, tf.float32),
            uniform(self.shift) * tf.cast(height, tf.float32), height, width,
            uniform(self.shear))
        return transform(inputs, transforms)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rotation": self.rotation, "zoom": self.zoom,
                "shift": self.shift, "shear": self.shear}


def augmentation_layers(policy: str) -> list[tf.keras.layers.Layer]:
    """The random transforms of ``policy`` ("shift" or "affine"), active only while training."""
    if policy == "shift":
        return [tf.keras.layers.RandomTranslation(SHIFT_FRACTION, SHIFT_FRACTION,
                                                  fill_mode="constant", name="aug_shift")]
    if policy == "affine":
        return [RandomAffine(AFFINE_ROTATION, AFFINE_ZOOM, AFFINE_SHIFT, AFFINE_SHEAR,
                             name="aug_affine")]
    raise ValueError(f"unknown augmentation {policy!r}: use 'shift' or 'affine'")
