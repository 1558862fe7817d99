"""The random transforms of the training images, active only while training (identity when
serving): ``augmentation_layers(policy)`` for the policy ``modules/budget.py`` picks.

* "shift": up to about one pixel (Keras' ``RandomTranslation``). Measured on 800 Fashion-MNIST
  images (batch 32, 60 epochs, two seeds): none 0.837, +-1 px 0.849, +-2 px 0.835, +-2 px with
  zoom 0.838, with zoom and rotation 0.791.
* "affine": what handwriting needs: rotation +-10 degrees, zoom +-10%, a slant (horizontal
  shear) of +-0.3 and shifts +-10%, composed into **one** transform per image and resampled
  once (``RandomAffine``). The slant is what people's handwriting varies in most and the
  rotation does not cover: a model trained on the embedded digits (upright scans) read MNIST's
  10,000 test digits at 0.798, 0.838, 0.788 (three seeds) without it and 0.849, 0.886, 0.877
  with it; TFX's 1,000 MNIST records 0.9797, 0.9807 without, 0.9798, 0.9800 with
  (docs/training.md).

Why ``RandomAffine`` is written here rather than chaining Keras' ``RandomRotation``,
``RandomZoom`` and ``RandomTranslation``: each of those resamples the image bilinearly, so the
chain blurred every training image three times while the served images are never resampled. The
model learned from strokes softer than the ones it then reads. Composing the three into one
matrix (the same ``ImageProjectiveTransformV3`` op the Keras layers call) resamples once and
costs one op instead of three. In-process on TFX's 1,000 MNIST example records (80% to train,
the budget's recipe, MNIST's 10,000 test digits), two seeds: the chain 0.9727 and 0.9758 in
30.1 s and 29.8 s of fit; one resampling 0.9797 and 0.9807 in 24.0 s and 27.8 s
(docs/training.md). Keras 2 has no composed random-affine layer; KerasCV's is not a dependency
of this stack.
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
AFFINE_ZOOM_WIDTH: float | None = None  # None: the height's factor (the aspect ratio is kept)
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
    +- that share; ``zoom_width``: an independent width factor, None: the height's), shear
    (``shear``: a slant of +- that share) and shift (``shift``: +- that share of each side) of
    every training image, in one resampling. The identity when not training."""

    def __init__(self, rotation: float, zoom: float, shift: float,
                 zoom_width: float | None = None, shear: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rotation, self.zoom, self.shift = float(rotation), float(zoom), float(shift)
        self.zoom_width = None if zoom_width is None else float(zoom_width)
        self.shear = float(shear)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if not training:
            return inputs
        shape = tf.shape(inputs)
        n, height, width = shape[0], shape[1], shape[2]

        def uniform(half_range: float) -> tf.Tensor:
            return tf.random.uniform([n], -half_range, half_range)

        zoom_y = 1.0 + uniform(self.zoom)
        zoom_x = zoom_y if self.zoom_width is None else 1.0 + uniform(self.zoom_width)
        transforms = affine_transforms(
            uniform(self.rotation * 2.0 * math.pi), zoom_y, zoom_x,
            uniform(self.shift) * tf.cast(width, tf.float32),
            uniform(self.shift) * tf.cast(height, tf.float32), height, width,
            uniform(self.shear))
        return transform(inputs, transforms)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rotation": self.rotation, "zoom": self.zoom,
                "shift": self.shift, "zoom_width": self.zoom_width, "shear": self.shear}


def augmentation_layers(policy: str) -> list[tf.keras.layers.Layer]:
    """The random transforms of ``policy`` ("shift" or "affine"), active only while training."""
    if policy == "shift":
        return [tf.keras.layers.RandomTranslation(SHIFT_FRACTION, SHIFT_FRACTION,
                                                  fill_mode="constant", name="aug_shift")]
    if policy == "affine":
        return [RandomAffine(AFFINE_ROTATION, AFFINE_ZOOM, AFFINE_SHIFT, AFFINE_ZOOM_WIDTH,
                             AFFINE_SHEAR, name="aug_affine")]
    raise ValueError(f"unknown augmentation {policy!r}: use 'shift' or 'affine'")
