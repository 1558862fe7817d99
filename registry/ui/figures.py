"""The console's figures, made on first request and cached: the report's figure code, reused.

A model's figures (training curves, per-class accuracy, confusion matrix, misclassified eval
images, examples per class) come from ``registry.report_data.gather_report`` and
``registry.report_render``'s figure functions, exactly as ``mlmodel report`` draws them. An
Examples artifact's gallery reads its first records. TensorFlow is imported here only, in the
app's worker threads, never by a page route.
"""

from __future__ import annotations

import base64
import glob
import os
import threading
from collections import OrderedDict
from typing import Any

from metastore.errors import InputError

MODEL_FIGURES = ("curves", "per_class", "confusion", "misclassified", "class_counts")
GALLERY_IMAGES = 24
CACHE_ENTRIES = 64


class FigureCache:
    """PNG bytes by key, made at most once at a time per key (a lock each), LRU-bounded."""

    def __init__(self, entries: int = CACHE_ENTRIES) -> None:
        self._done: OrderedDict[tuple[Any, ...], dict[str, bytes | None]] = OrderedDict()
        self._locks: dict[tuple[Any, ...], threading.Lock] = {}
        self._lock = threading.Lock()
        self._entries = entries

    def get(self, key: tuple[Any, ...], make: Any) -> dict[str, bytes | None]:
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return self._done[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if key in self._done:
                    return self._done[key]
            made = make()
            with self._lock:
                self._done[key] = made
                self._locks.pop(key, None)
                while len(self._done) > self._entries:
                    self._done.popitem(last=False)
            return made


NOTHING_TO_DRAW = {
    "curves": "No training curves: neither TensorBoard logs nor a recorded history were found.",
    "per_class": "No per-class accuracy: the eval split could not be scored.",
    "confusion": "No confusion matrix: the eval split could not be scored.",
    "misclassified": "No misclassified eval images: the model got every eval example right.",
    "class_counts": "No class counts: the run has no label statistics.",
}


def nothing_to_draw(kind: str) -> str:
    """A small SVG saying why a figure is empty (the page shows it in the figure's place)."""
    from html import escape

    text = escape(NOTHING_TO_DRAW.get(kind, "Nothing to draw."))
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="460" height="60" viewBox="0 0 460 60">'
            '<rect width="460" height="60" fill="#f6f8fa"/><text x="12" y="35" font-size="13" '
            f'font-family="sans-serif" fill="#656d76">{text}</text></svg>')


def _decoded(data: str | None) -> bytes | None:
    return base64.b64decode(data) if data else None


def model_figures(registry: Any, name: str) -> dict[str, bytes | None]:
    """Every model figure of ``name``'s newest trained model, as PNG bytes (None: no data)."""
    from contracts.runtime import configure_tensorflow

    configure_tensorflow()
    from registry import report_render as draw
    from registry.report_data import gather_report

    data = gather_report(registry, name)
    figures: dict[str, bytes | None] = dict.fromkeys(MODEL_FIGURES)
    names = data.class_names
    if data.curves:
        figures["curves"] = _decoded(draw.figure_curves(data.curves))
    if data.statistics:
        figures["class_counts"] = _decoded(draw.figure_class_counts(data.statistics, names))
    if data.predictions is not None:
        pred = data.predictions
        matrix = draw.confusion_matrix(pred, len(names))
        figures["confusion"] = _decoded(draw.figure_confusion(matrix, names))
        figures["misclassified"] = _decoded(draw.figure_misclassified(pred, names))
        totals = matrix.sum(axis=1)
        per_class = [float(matrix[i, i] / totals[i]) if totals[i] else 0.0
                     for i in range(len(names))]
        figures["per_class"] = _decoded(draw.figure_per_class(per_class, names))
    return figures


def examples_gallery(uri: str, class_names: list[str] | None = None,
                     count: int = GALLERY_IMAGES) -> bytes:
    """The first ``count`` images of an Examples artifact (its first split), with their labels."""
    from contracts.runtime import configure_tensorflow

    configure_tensorflow()
    import numpy as np
    import tensorflow as tf

    from contracts.examples import IMAGE_HEIGHT, IMAGE_KEY, IMAGE_WIDTH, LABEL_KEY
    from registry import report_render as draw

    splits = sorted(p for p in glob.glob(os.path.join(uri, "Split-*")) if os.path.isdir(p))
    files = sorted(glob.glob(os.path.join(splits[0], "*"))) if splits else []
    if not files:
        raise InputError(f"the Examples artifact at {uri} has no split files to show")
    images, labels = [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(count):
        features = tf.train.Example.FromString(record.numpy()).features.feature
        pixels = np.asarray(features[IMAGE_KEY].int64_list.value, dtype=np.uint8)
        if pixels.size != IMAGE_HEIGHT * IMAGE_WIDTH:
            continue
        images.append(pixels.reshape(IMAGE_HEIGHT, IMAGE_WIDTH))
        values = features[LABEL_KEY].int64_list.value
        labels.append(int(values[0]) if values else -1)
    plt = draw._pyplot()
    columns = 8
    rows = max(1, (len(images) + columns - 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label in zip(axes.flat, images, labels, strict=False):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(draw.class_name(class_names or [], label), fontsize=8)
    return base64.b64decode(draw._png(fig))
