"""Read what the model server captured: TF Serving ``PredictionLog`` TFRecords -> images + answers.

The files are where ``contracts/capture.py`` puts them, ``<capture_dir>/<serving_name>/<version>/
capture-<utc>-<pid>-<seq>.tfrecord``; files still being written (``.tmp``) are never read. Each
record is one answered request, possibly holding several images:

* a ``predict_log`` whose request input is ``images`` (floats in [0, 1] or 0..255, [n, 28, 28(, 1)]),
  ``image_bytes`` (encoded PNG/JPEG/...) or ``examples`` (serialized tf.Examples in our layout), and
  whose response holds ``probabilities`` [n, classes];
* a ``classify_log`` (tf.Examples in, one (label, score) list per example out).

The TF Serving protos import TensorFlow's protobuf modules (a few seconds): callers import this
module only when they read captures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from contracts import capture as layout
from contracts.examples import IMAGE_HEIGHT, IMAGE_WIDTH
from contracts.signatures import (
    INPUT_EXAMPLES,
    INPUT_IMAGE_BYTES,
    INPUT_IMAGES,
    OUTPUT_PROBABILITIES,
)
from datasources import readers
from datasources.errors import DataError
from metastore.errors import InputError

SIDE = (IMAGE_HEIGHT, IMAGE_WIDTH)


@dataclass
class Captured:
    """The images of the captured requests, one row per image, in file and record order."""

    pixels: np.ndarray  # uint8 [n, 28, 28]
    probabilities: np.ndarray  # float32 [n, classes]
    at: np.ndarray  # float64 [n]: the request's time (seconds since the epoch, UTC)
    versions: np.ndarray  # int64 [n]
    sources: list[str] = field(default_factory=list)  # "<file>#<record>[:<image>]"
    files: int = 0
    skipped: int = 0  # records that held no image we could read (counted, not fatal)

    def __len__(self) -> int:
        return len(self.pixels)


def parse_since(text: str | None) -> float | None:
    """``24h``, ``30m``, ``7d``, ``90s`` (or plain seconds) -> seconds; None/'' -> None."""
    if not text:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    value = text.strip().lower()
    scale = units.get(value[-1:], 0)
    number = value[:-1] if scale else value
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        raise InputError(f"--since {text!r}: give a duration such as 90s, 30m, 24h or 7d") from None
    if seconds <= 0:
        raise InputError(f"--since {text!r}: the duration must be positive")
    return seconds


def capture_files(capture_dir: str, serving_name: str, versions: Sequence[int],
                  since_s: float | None = None, now: float | None = None) -> list[str]:
    """Finished capture files of ``versions``, oldest first; with ``since_s`` only files
    written to (modified) within that window."""
    cutoff = None if since_s is None else (now or time.time()) - since_s
    found: list[tuple[str, str]] = []
    for version in versions:
        folder = layout.version_dir(capture_dir, serving_name, version)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            continue
        for name in names:
            if not layout.is_capture_file(name):
                continue
            path = os.path.join(folder, name)
            if cutoff is not None and os.path.getmtime(path) < cutoff:
                continue
            found.append((name, path))
    return [path for _, path in sorted(found)]


def _to_images(array: np.ndarray, source: str) -> np.ndarray:
    """A captured ``images`` tensor -> uint8 [n, 28, 28]."""
    values = np.asarray(array)
    if values.ndim >= 1 and values.shape[-1] == 1 and values.ndim == 4:
        values = values[..., 0]
    if values.ndim == 2 and values.shape[1] == SIDE[0] * SIDE[1]:
        values = values.reshape(-1, *SIDE)
    if values.ndim == 2 and values.shape == SIDE:
        values = values[None]
    if values.ndim != 3 or values.shape[1:] != SIDE:
        raise DataError(f"{source}: images of shape {values.shape}, expected [n, 28, 28(, 1)]")
    if values.dtype == np.uint8:
        return values
    floats = values.astype(np.float32)
    scale = 255.0 if floats.size and floats.max() <= 1.0 else 1.0
    return np.clip(np.rint(floats * scale), 0, 255).astype(np.uint8)


def _decode_strings(key: str, values: Sequence[bytes], source: str) -> np.ndarray:
    """Encoded images (``image_bytes``) or serialized tf.Examples (``examples``) -> uint8 images."""
    decode = _example_pixels if key == INPUT_EXAMPLES else readers.decode_image
    images = [decode(value, f"{source}:{i}") for i, value in enumerate(values)]
    return np.stack(images) if images else np.zeros((0, *SIDE), np.uint8)


def _example_pixels(serialized: bytes, source: str) -> np.ndarray:
    """The ``image`` of a tf.Example sent without a label (as clients of serving_examples do)."""
    from tensorflow.core.example import example_pb2

    feature = example_pb2.Example.FromString(serialized).features.feature.get("image")
    if feature is None:
        raise DataError(f"{source}: tf.Example without an 'image' feature")
    values = (np.asarray(feature.int64_list.value) if feature.HasField("int64_list")
              else np.asarray(feature.float_list.value))
    return _to_images(values.reshape(1, -1), source)[0]


_FAST_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 9: np.int64}  # DT_*


def _ndarray(tensor: object) -> np.ndarray:
    """A TensorProto as an array: numbers in ``tensor_content`` straight from the bytes (what
    the server writes; twice as fast as ``tf.make_ndarray``), anything else through TF."""
    dtype = _FAST_DTYPES.get(tensor.dtype)  # type: ignore[attr-defined]
    content = tensor.tensor_content  # type: ignore[attr-defined]
    if dtype is not None and content:
        shape = [d.size for d in tensor.tensor_shape.dim]  # type: ignore[attr-defined]
        values = np.frombuffer(content, dtype=dtype)
        if values.size == int(np.prod(shape, dtype=np.int64)):
            return values.reshape(shape)
    import tensorflow as tf

    return tf.make_ndarray(tensor)


def _predict_record(record: object, source: str) -> tuple[np.ndarray, np.ndarray]:
    request, response = record.predict_log.request, record.predict_log.response  # type: ignore[attr-defined]
    inputs = dict(request.inputs)
    if INPUT_IMAGES in inputs:
        pixels = _to_images(_ndarray(inputs[INPUT_IMAGES]), source)
    elif INPUT_IMAGE_BYTES in inputs or INPUT_EXAMPLES in inputs:
        key = INPUT_IMAGE_BYTES if INPUT_IMAGE_BYTES in inputs else INPUT_EXAMPLES
        pixels = _decode_strings(key, list(inputs[key].string_val), source)
    elif len(inputs) == 1:
        pixels = _to_images(_ndarray(next(iter(inputs.values()))), source)
    else:
        raise DataError(f"{source}: no image input among {sorted(inputs)}")
    outputs = dict(response.outputs)
    tensor = outputs.get(OUTPUT_PROBABILITIES)
    if tensor is None and len(outputs) == 1:
        tensor = next(iter(outputs.values()))
    if tensor is None:
        raise DataError(f"{source}: no '{OUTPUT_PROBABILITIES}' output among {sorted(outputs)}")
    return pixels, np.asarray(_ndarray(tensor), dtype=np.float32).reshape(len(pixels), -1)


def _classify_record(record: object, source: str,
                     class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    log = record.classify_log  # type: ignore[attr-defined]
    examples = log.request.input.example_list.examples
    pixels = np.stack([_example_pixels(e.SerializeToString(), f"{source}:{i}")
                       for i, e in enumerate(examples)]) if examples else np.zeros((0, *SIDE))
    index = {name: i for i, name in enumerate(class_names)}
    rows = []
    for classification in log.response.result.classifications:
        row = np.zeros(len(class_names), np.float32)
        for position, entry in enumerate(classification.classes):
            slot = index.get(entry.label, int(entry.label) if entry.label.isdigit() else position)
            if 0 <= slot < len(row):
                row[slot] = entry.score
        rows.append(row)
    return pixels.astype(np.uint8), np.stack(rows) if rows else np.zeros((0, len(class_names)))


def iter_records(path: str) -> Iterator[tuple[int, object]]:
    from tensorflow_serving.apis import prediction_log_pb2

    for index, data in enumerate(readers.iter_tfrecord_records(path)):
        yield index, prediction_log_pb2.PredictionLog.FromString(data)


def read_captured(files: Sequence[str], class_names: Sequence[str],
                  since_s: float | None = None, limit: int | None = None,
                  now: float | None = None) -> Captured:
    """Every image of the records in ``files`` (requests older than ``since_s`` left out;
    at most ``limit`` images, the newest kept)."""
    cutoff = None if since_s is None else (now or time.time()) - since_s
    pixels: list[np.ndarray] = []
    probabilities: list[np.ndarray] = []
    at: list[np.ndarray] = []
    versions: list[np.ndarray] = []
    sources: list[str] = []
    skipped = 0
    for path in files:
        name = os.path.basename(path)
        for index, record in iter_records(path):
            meta = record.log_metadata  # type: ignore[attr-defined]
            if cutoff is not None and meta.timestamp_secs and meta.timestamp_secs < cutoff:
                continue
            source = f"{name}#{index}"
            kind = record.WhichOneof("log_type")  # type: ignore[attr-defined]
            try:
                if kind == "predict_log":
                    images, probs = _predict_record(record, source)
                elif kind == "classify_log":
                    images, probs = _classify_record(record, source, class_names)
                else:
                    skipped += 1
                    continue
            except (DataError, ValueError):  # one bad record never hides the others
                skipped += 1
                continue
            if len(images) != len(probs) or probs.shape[1] != len(class_names):
                skipped += 1
                continue
            count = len(images)
            pixels.append(images)
            probabilities.append(probs)
            at.append(np.full(count, float(meta.timestamp_secs or os.path.getmtime(path))))
            versions.append(np.full(count, int(meta.model_spec.version.value), np.int64))
            sources += [source if count == 1 else f"{source}:{i}" for i in range(count)]
    if not pixels:
        return Captured(np.zeros((0, *SIDE), np.uint8), np.zeros((0, len(class_names)), np.float32),
                        np.zeros(0), np.zeros(0, np.int64), [], len(files), skipped)
    result = Captured(np.concatenate(pixels), np.concatenate(probabilities).astype(np.float32),
                      np.concatenate(at), np.concatenate(versions), sources, len(files), skipped)
    if limit is not None and len(result) > limit:
        keep = slice(len(result) - limit, None)
        result = Captured(result.pixels[keep], result.probabilities[keep], result.at[keep],
                          result.versions[keep], result.sources[keep], result.files, skipped)
    return result
