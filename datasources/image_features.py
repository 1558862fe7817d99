"""Cheap numbers that describe a grey image, the same for training examples and served requests.

``mlmodel monitor`` compares their distributions (captured requests against the training examples
of the served version's run) to tell when the images arriving in production stopped looking like
the training data. Pure numpy, vectorised over a batch, no TensorFlow.

Every feature is a float in [0, 1], computed on intensities scaled to [0, 1]:

* ``mean_intensity``: the mean pixel value (an inverted image moves it most);
* ``ink_fraction``: the share of pixels brighter than ``INK_THRESHOLD`` (stroke thickness, scale);
* ``center_of_mass_x`` / ``center_of_mass_y``: the intensity-weighted centre, 0 = left/top edge,
  1 = right/bottom edge (0.5 for an all-black image); shifted or rotated images move it;
* ``bbox_width`` / ``bbox_height``: the extent of the ink pixels as a share of the side (0 when an
  image has no ink); rotated, cropped or rescaled images change it.
"""

from __future__ import annotations

import numpy as np

INK_THRESHOLD = 0.5
FEATURE_NAMES: tuple[str, ...] = (
    "mean_intensity", "ink_fraction", "center_of_mass_x", "center_of_mass_y", "bbox_width",
    "bbox_height",
)


def as_unit_images(pixels: np.ndarray) -> np.ndarray:
    """float32 [n, height, width] in [0, 1] from uint8 0..255 or floats in [0, 1] ([n, h, w] or
    [n, h, w, 1]); ValueError for any other shape."""
    array = np.asarray(pixels)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise ValueError(f"images must be [n, height, width] (or [..., 1]); got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def _extent(ink_along: np.ndarray) -> np.ndarray:
    """Share of positions between the first and last True of each row of ``ink_along`` [n, k]."""
    size = ink_along.shape[1]
    present = ink_along.any(axis=1)
    first = np.argmax(ink_along, axis=1)
    last = size - 1 - np.argmax(ink_along[:, ::-1], axis=1)
    return np.where(present, (last - first + 1) / size, 0.0).astype(np.float32)


def _centre(mass: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Weighted mean position (0..1) of ``mass`` [n, k]; 0.5 where there is no mass."""
    positions = np.linspace(0.0, 1.0, mass.shape[1], dtype=np.float32)
    centre = np.divide(mass @ positions, total, out=np.full(total.shape, 0.5, np.float32),
                       where=total > 0)
    return centre.astype(np.float32)


def image_features(pixels: np.ndarray) -> dict[str, np.ndarray]:
    """``FEATURE_NAMES`` -> float32 [n] for a batch of grey images (see the module doc)."""
    images = as_unit_images(pixels)
    count = images.shape[0]
    flat = images.reshape(count, -1)
    ink = images > INK_THRESHOLD
    total = flat.sum(axis=1)
    return {
        "mean_intensity": flat.mean(axis=1).astype(np.float32),
        "ink_fraction": ink.reshape(count, -1).mean(axis=1).astype(np.float32),
        "center_of_mass_x": _centre(images.sum(axis=1), total),
        "center_of_mass_y": _centre(images.sum(axis=2), total),
        "bbox_width": _extent(ink.any(axis=1)),
        "bbox_height": _extent(ink.any(axis=2)),
    }
