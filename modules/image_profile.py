"""Measured properties of the training images that the budget's rules read.

Pure numpy (no TensorFlow).

``ink_margin_px(images)`` is the median, over the images, of the free border around each image's
ink (the pixels brighter than a fifth of the image's maximum): the fewest pixels between the
ink's bounding box and any edge of the frame.

Measured on 2,000 images each: scikit-learn's digits upscaled MNIST-style 4 px (every image);
MNIST's test digits 3 px (89% at least 2 px); Fashion-MNIST 0 px (0.2% at least 2 px: the items
fill the frame). Objects with room around them survive a rotation, zoom or shift of a tenth of
the frame whole; objects that touch the edges are cut by them.

``fine_detail(images)`` is the share of the images' spectral energy (DC left out) above
``DETAIL_CUTOFF`` cycles per pixel, half the Nyquist frequency. Measured on 500 images each:
scikit-learn's digits (8x8 scans upscaled) 0.026; Fashion-MNIST 0.101; MNIST's test digits
0.110. Images without fine detail are low-resolution scans: a model trained on them reads sharp
inputs (real handwriting, digits drawn in the console) poorly unless it sees them as blurred.
"""

from __future__ import annotations

import dataclasses

import numpy as np

INK_THRESHOLD = 0.2  # of each image's own maximum: blur and noise below it are not ink
SAMPLE = 2_000  # images measured (the first ones; the statistic is a median)


def _sample(images: np.ndarray, what: str) -> np.ndarray:
    """The first ``SAMPLE`` images as float32 (N, H, W); ValueError naming ``what`` otherwise."""
    x = np.asarray(images[:SAMPLE], dtype=np.float32)
    if x.ndim == 4:
        x = x[..., 0]
    if x.ndim != 3 or len(x) == 0:
        raise ValueError(f"{what} needs images shaped (N, H, W[, 1]), got {x.shape}")
    return x


def ink_margin_px(images: np.ndarray) -> float:
    """Median free margin, in pixels, of ``images`` (N, H, W) or (N, H, W, 1); blank ones skipped."""
    x = _sample(images, "ink_margin_px")
    peak = x.reshape(len(x), -1).max(axis=1)
    x = x[peak > 0] / peak[peak > 0, None, None]
    if len(x) == 0:
        return 0.0
    ink = x > INK_THRESHOLD
    margins = np.minimum(_margin(ink.any(axis=2)), _margin(ink.any(axis=1)))
    return float(np.median(margins))


def _margin(lines: np.ndarray) -> np.ndarray:
    """Per image, the fewer of the empty lines before the first and after the last inked one."""
    size = lines.shape[1]
    first = lines.argmax(axis=1)
    last = size - 1 - lines[:, ::-1].argmax(axis=1)
    return np.minimum(first, size - 1 - last)


DETAIL_CUTOFF = 0.25  # cycles per pixel


def fine_detail(images: np.ndarray) -> float:
    """Share of spectral energy above ``DETAIL_CUTOFF`` cycles/px (0: smooth, ~0.1: sharp)."""
    x = _sample(images, "fine_detail")
    power = np.abs(np.fft.fft2(x)) ** 2
    fy, fx = np.fft.fftfreq(x.shape[1]), np.fft.fftfreq(x.shape[2])
    radius = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    total = float(power[:, radius > 0].sum())
    return float(power[:, radius > DETAIL_CUTOFF].sum()) / total if total > 0 else 0.0


@dataclasses.dataclass(frozen=True)
class ImageProfile:
    """What the budget reads from the training images (see the module docstring)."""

    margin_px: float
    detail: float


def measure(images: np.ndarray) -> ImageProfile:
    """The profile of the first ``SAMPLE`` of ``images`` (N, H, W[, 1])."""
    return ImageProfile(margin_px=ink_margin_px(images), detail=round(fine_detail(images), 4))
