"""Pure-Python readers for the input layouts ExampleGen accepts (no TensorFlow at import time).

Every reader yields ``(source, pixels, label)``: ``source`` names the file (and row or index) the
example came from, ``pixels`` is a uint8 ``[28, 28]`` array (white on black, as MNIST) and
``label`` an int class index. ``to_tf_example`` / ``to_tf_examples`` turn them into serialized
tf.Examples in the layout of ``contracts/examples.py`` without importing TensorFlow.

Any problem with the data raises ``DataError``, whose message names the file and what to do.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts import examples as features
from datasources import storage
from datasources.errors import DataError
from datasources.images import DEFAULT_MAX_IMAGE_PIXELS, ImageTooLarge, check_pixels

SIDE = features.IMAGE_HEIGHT
PIXELS = features.IMAGE_PIXELS

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
# Entries that are never data: dot files (.DS_Store, .ipynb_checkpoints, ...) and OS litter.
IGNORED_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
TRAIN_SPLIT_NAMES = ("train", "training")
# In priority order: with both ``validation`` and ``test`` present, ``validation`` is the eval split.
EVAL_SPLIT_NAMES = ("eval", "evaluation", "validation", "valid", "val", "test", "testing")
SPLIT_FOLDER_NAMES = frozenset(TRAIN_SPLIT_NAMES + EVAL_SPLIT_NAMES)

# Images are converted when sensible: grey or colour, any size whose short side is at least
# MIN_SIDE pixels and whose aspect ratio is at most MAX_ASPECT. Anything else is refused.
MIN_SIDE = 8
MAX_ASPECT = 2.0

IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension

Example = tuple[str, np.ndarray, int]


__all__ = ["DataError"]  # defined in errors.py (storage.py raises it too); imported from here


# --------------------------------------------------------------------------------------------
# Names, hashing, labels


def is_ignored(name: str) -> bool:
    """Hidden and OS-generated entries (``.DS_Store``, ``__MACOSX``...) are silently skipped."""
    return name.startswith(".") or name in IGNORED_NAMES


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def hash_bucket(key: str) -> int:
    """A stable bucket 0..99 for ``key`` (a relative path, or ``file:row``)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 100


def in_split(key: str, split: str, eval_percent: int) -> bool:
    """Whether ``key`` falls in ``split`` ('train' or 'eval') of a stable hash split."""
    is_eval = hash_bucket(key) < eval_percent
    return is_eval if split == "eval" else not is_eval


def label_for_folder(name: str, class_names: Sequence[str]) -> int | None:
    """Class index of a label folder: its integer name, or a class name; None if unknown."""
    if name.isdigit():
        index = int(name)
        return index if index < len(class_names) else None
    lowered = [c.lower() for c in class_names]
    return lowered.index(name.lower()) if name.lower() in lowered else None


def check_label(label: int, num_classes: int, source: str) -> int:
    if not 0 <= label < num_classes:
        raise DataError(
            f"{source}: label {label} is outside the known classes 0..{num_classes - 1}; "
            "fix the label or pass the full list of class names"
        )
    return int(label)


# --------------------------------------------------------------------------------------------
# Images


def decode_image(data: bytes, source: str) -> np.ndarray:
    """Encoded image bytes -> uint8 [28, 28] grey; DataError if corrupted or not convertible,
    or if its header claims more pixels than the cap (``datasources.images``), before decoding."""
    from PIL import Image, UnidentifiedImageError

    try:
        check_pixels(data, source, DEFAULT_MAX_IMAGE_PIXELS)
    except ImageTooLarge as exc:
        raise DataError(str(exc)) from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return convert_image(img, source)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        reason = "not a recognised image format" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise DataError(
            f"{source}: cannot decode the image ({reason}); the file is corrupted or not an image. "
            "Replace it with a valid PNG/JPEG or delete it"
        ) from exc


def read_image(path: str | os.PathLike[str], source: str | None = None) -> np.ndarray:
    """Read one image file as uint8 [28, 28] grey."""
    return decode_image(storage.read_bytes(str(path)), source or str(path))


def check_convertible(width: int, height: int, source: str) -> None:
    short, long = min(width, height), max(width, height)
    if short < MIN_SIDE or long > MAX_ASPECT * short:
        raise DataError(
            f"{source}: a {width}x{height} image cannot be converted to {SIDE}x{SIDE}: images must "
            f"be at least {MIN_SIDE}px on each side and at most {MAX_ASPECT:g}:1 wide or tall. "
            "Crop or resize it, or delete it"
        )


def convert_image(img: object, source: str) -> np.ndarray:
    """A PIL image of any mode -> uint8 [28, 28] grey (colour to grey, resized to fit 28x28)."""
    from PIL import Image

    assert isinstance(img, Image.Image)
    if img.size == (SIDE, SIDE) and img.mode == "L":
        return np.asarray(img, dtype=np.uint8).copy()
    check_convertible(img.width, img.height, source)
    grey = _to_grey(img)
    if grey.shape != (SIDE, SIDE):
        grey = resize_grey(grey)
    return grey


def _to_grey(img: object) -> np.ndarray:
    from PIL import Image

    assert isinstance(img, Image.Image)
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16/32-bit grey: rescale, don't clip
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        return np.clip(arr * (255.0 / top), 0, 255).round().astype(np.uint8)
    if img.mode != "L":
        img = img.convert("L")  # ITU-R 601 luma; an alpha channel is dropped
    return np.asarray(img, dtype=np.uint8)


def resize_grey(grey: np.ndarray) -> np.ndarray:
    """Pad to a square with the border's most common value, then resize smoothly to 28x28."""
    from PIL import Image

    h, w = grey.shape
    if h != w:
        border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
        fill = int(np.bincount(border).argmax())
        side = max(h, w)
        square = np.full((side, side), fill, dtype=np.uint8)
        top, left = (side - h) // 2, (side - w) // 2
        square[top : top + h, left : left + w] = grey
        grey = square
    resized = Image.fromarray(grey, mode="L").resize((SIDE, SIDE), Image.LANCZOS)
    return np.asarray(resized, dtype=np.uint8).copy()


# --------------------------------------------------------------------------------------------
# Image folders


def list_dir(path: str | os.PathLike[str]) -> list[storage.Entry]:
    """Visible entries of a folder (local or remote), sorted by name."""
    return storage.list_dir(str(path), is_ignored)


def list_label_folders(split_dir: str, class_names: Sequence[str]) -> list[tuple[str, int]]:
    """The label folders of ``split_dir`` with their class index; DataError for unknown ones."""
    folders, unknown = [], []
    for entry in list_dir(split_dir):
        if entry.is_dir():
            label = label_for_folder(entry.name, class_names)
            if label is None:
                unknown.append(entry.name)
            folders.append((entry.path, label if label is not None else -1))
        elif is_image_name(entry.name):
            raise DataError(
                f"{entry.path}: images must be inside a label folder "
                f"(<root>/[<split>/]<label>/<image>); move it into one or delete it"
            )
    if unknown:
        raise DataError(
            f"{split_dir}: label folder(s) {', '.join(sorted(unknown))} are not known classes. "
            f"Label folders must be class indices 0..{len(class_names) - 1} (or class names "
            f"{', '.join(class_names)}); rename or remove them, or pass the class names"
        )
    return folders


def list_image_files(
    root: str | os.PathLike[str], split_dir: str | None, class_names: Sequence[str]
) -> list[tuple[str, int]]:
    """``(relative path, label)`` of every image under ``root/[split_dir/]<label>/``.

    Raises DataError for a label folder that is not a known class and for a non-image file inside
    a label folder. Hidden files are skipped.
    """
    root_path = str(root)
    base = storage.join(root_path, split_dir) if split_dir else root_path
    files: list[tuple[str, int]] = []
    not_images: list[str] = []
    for folder, label in list_label_folders(base, class_names):
        prefix = storage.relative(folder, root_path) + "/"
        for entry in list_dir(folder):
            if entry.is_dir():
                not_images.append(entry.path + "/")
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                files.append((prefix + entry.name, label))
            else:
                not_images.append(entry.path)
    if not_images:
        shown = ", ".join(not_images[:5]) + (f" and {len(not_images) - 5} more" if len(not_images) > 5 else "")
        raise DataError(
            f"{shown}: not image files (expected {'/'.join(sorted(IMAGE_EXTENSIONS))}) inside label "
            "folders; move them out of the data folder or delete them"
        )
    return files


def iter_image_folder(
    root: str | os.PathLike[str],
    split_dir: str | None,
    class_names: Sequence[str],
    *,
    split: str | None = None,
    eval_percent: int = 20,
) -> Iterator[Example]:
    """Examples of an image folder; with ``split`` set, only that side of the hash split."""
    for rel, label in list_image_files(root, split_dir, class_names):
        if split is None or in_split(rel, split, eval_percent):
            yield rel, read_image(storage.join(str(root), rel), rel), label


# --------------------------------------------------------------------------------------------
# MNIST IDX files


@dataclass(frozen=True)
class IdxHeader:
    path: str
    kind: str  # 'images' | 'labels'
    count: int
    rows: int = 0
    cols: int = 0

    @property
    def offset(self) -> int:
        return 16 if self.kind == "images" else 8


def _open_maybe_gz(path: str | os.PathLike[str]) -> io.BufferedIOBase:
    """A file (local or remote) for reading, un-gzipped on the fly when it is gzipped."""
    p = str(path)
    if not storage.is_remote(p):
        with open(p, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        return gzip.open(p, "rb") if gz else open(p, "rb")  # type: ignore[return-value]
    with storage.open_binary(p) as f:
        gz = f.read(2) == b"\x1f\x8b"
    raw = storage.open_binary(p)
    if not gz:
        return raw  # type: ignore[return-value]
    unzipped = gzip.GzipFile(fileobj=raw, mode="rb")
    close = unzipped.close

    def close_both() -> None:  # GzipFile leaves a file object it was given open
        try:
            close()
        finally:
            raw.close()

    unzipped.close = close_both  # type: ignore[method-assign]
    return unzipped  # type: ignore[return-value]


def read_idx_header(path: str | os.PathLike[str]) -> IdxHeader:
    """The header of an IDX file (gzipped or not); DataError if it is not a ubyte IDX file."""
    try:
        with _open_maybe_gz(path) as f:
            head = f.read(16)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read the IDX file ({exc}); re-download it") from exc
    if len(head) >= 8 and struct.unpack(">I", head[:4])[0] == IDX_LABELS_MAGIC:
        return IdxHeader(str(path), "labels", struct.unpack(">I", head[4:8])[0])
    if len(head) == 16 and struct.unpack(">I", head[:4])[0] == IDX_IMAGES_MAGIC:
        count, rows, cols = struct.unpack(">III", head[4:16])
        return IdxHeader(str(path), "images", count, rows, cols)
    raise DataError(
        f"{path}: not an MNIST IDX file of unsigned bytes (bad magic number {head[:4].hex()}); "
        "expected *-images-idx3-ubyte[.gz] / *-labels-idx1-ubyte[.gz]"
    )


def check_idx_pair(images_path: str, labels_path: str) -> tuple[IdxHeader, IdxHeader]:
    """Headers of an images/labels pair; DataError if the kinds or the counts disagree."""
    images, labels = read_idx_header(images_path), read_idx_header(labels_path)
    if images.kind != "images" or labels.kind != "labels":
        raise DataError(
            f"{images_path} / {labels_path}: expected an images file and a labels file, got "
            f"{images.kind} and {labels.kind}"
        )
    if images.count != labels.count:
        raise DataError(
            f"{images_path} holds {images.count} images but {labels_path} holds {labels.count} "
            "labels; the counts must agree. Use matching files (same prefix, same release)"
        )
    if images.count == 0:
        raise DataError(f"{images_path}: holds no images; use a non-empty IDX file")
    check_convertible(images.cols, images.rows, images_path)
    return images, labels


def _read_idx_body(header: IdxHeader, itemsize: int) -> np.ndarray:
    with _open_maybe_gz(header.path) as f:
        data = f.read()
    need = header.offset + header.count * itemsize
    if len(data) < need:
        raise DataError(
            f"{header.path}: truncated: the header promises {header.count} {header.kind} "
            f"({need} bytes) but the file holds {len(data)} bytes; re-download it"
        )
    return np.frombuffer(data, dtype=np.uint8, count=header.count * itemsize, offset=header.offset)


def read_idx_pair(images_path: str, labels_path: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [n, 28, 28], labels int64 [n])`` from an IDX pair, with numpy."""
    images_h, labels_h = check_idx_pair(images_path, labels_path)
    images = _read_idx_body(images_h, images_h.rows * images_h.cols).reshape(
        images_h.count, images_h.rows, images_h.cols
    )
    labels = _read_idx_body(labels_h, 1).astype(np.int64)
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        raise DataError(
            f"{labels_path}: label {int(labels[bad[0]])} at index {int(bad[0])} ({bad.size} in all) "
            f"is outside the known classes 0..{num_classes - 1}; pass the full list of class names"
        )
    if images.shape[1:] != (SIDE, SIDE):
        images = np.stack([resize_grey(np.ascontiguousarray(img)) for img in images])
    return images, labels


def read_idx_images(images_path: str) -> np.ndarray:
    """``uint8 [n, 28, 28]`` from one IDX images file, without its labels (``serving predict``)."""
    header = read_idx_header(images_path)
    if header.kind != "images":
        raise DataError(f"{images_path}: an IDX labels file, not images; pass the "
                        "*-images-idx3-ubyte file (its labels are read from the file beside it)")
    check_convertible(header.cols, header.rows, images_path)
    images = _read_idx_body(header, header.rows * header.cols).reshape(
        header.count, header.rows, header.cols)
    if images.shape[1:] != (SIDE, SIDE):
        images = np.stack([resize_grey(np.ascontiguousarray(img)) for img in images])
    return images


def max_idx_label(labels_path: str) -> int:
    """The highest label in an IDX labels file (one byte per label: cheap even for 60k)."""
    header = read_idx_header(labels_path)
    if header.kind != "labels":
        raise DataError(f"{labels_path}: not an IDX labels file")
    body = _read_idx_body(header, 1)
    return int(body.max()) if body.size else 0


def idx_prefix(name: str) -> tuple[str, str] | None:
    """``('train', 'images')`` for ``train-images-idx3-ubyte.gz``; None for other names."""
    for kind, marker in (("images", "-images-idx3-ubyte"), ("labels", "-labels-idx1-ubyte")):
        head, sep, tail = name.partition(marker)
        if sep and tail in ("", ".gz"):
            return head, kind
        # Also accept the dotted spelling some mirrors use: train-images.idx3-ubyte
        head, sep, tail = name.partition(marker.replace("-idx", ".idx"))
        if sep and tail in ("", ".gz"):
            return head, kind
    return None


def find_idx_pairs(names: Iterable[str]) -> dict[str, dict[str, str]]:
    """``{prefix: {'images': name, 'labels': name}}`` for the IDX file names in ``names``."""
    pairs: dict[str, dict[str, str]] = {}
    for name in sorted(names):
        parsed = idx_prefix(name)
        if parsed:
            prefix, kind = parsed
            pairs.setdefault(prefix, {})[kind] = name
    return pairs


# --------------------------------------------------------------------------------------------
# IRIS TSV (img2tsv / splitter output)


def parse_onehot(text: str, source: str) -> int:
    """Label index from an IRIS label cell: a one-hot list ``1,0,...`` / ``[1,0,...]`` or an int."""
    cell = text.strip().strip("[]")
    try:
        values = [float(v) for v in cell.split(",")]
    except ValueError as exc:
        raise DataError(f"{source}: label {text!r} is neither a one-hot list nor an integer") from exc
    if len(values) == 1:
        return int(values[0])
    if sorted(values) != [0.0] * (len(values) - 1) + [1.0]:
        raise DataError(f"{source}: label {text!r} is not a one-hot list (exactly one 1)")
    return values.index(1.0)


def parse_feature(text: str, source: str) -> np.ndarray:
    """784 comma-separated grey values -> uint8 [28, 28].

    A row whose values all lie in [0, 1] is read as img2tsv's floats (x255); otherwise as 0..255.
    """
    values = np.array(text.strip().strip("[]").split(","), dtype=object)
    try:
        arr = values.astype(np.float64)
    except ValueError as exc:
        raise DataError(f"{source}: the feature column holds a non-number") from exc
    if arr.size != PIXELS:
        raise DataError(
            f"{source}: the feature column holds {arr.size} values, expected {PIXELS} (28x28 grey); "
            "re-create the TSV from 28x28 images"
        )
    if arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
        raise DataError(f"{source}: pixel values must lie in [0, 1] or 0..255")
    if arr.max(initial=0) <= 1.0:
        arr = arr * 255.0
    return arr.round().astype(np.uint8).reshape(SIDE, SIDE)


def _tsv_columns(header: list[str], first: list[str] | None, path: str) -> tuple[int, int]:
    names = [h.strip().lower() for h in header]
    feature = names.index("feature") if "feature" in names else -1
    label = names.index("label") if "label" in names else -1
    if feature < 0 and first is not None:  # a renamed feature column: the one with 784 values
        feature = next((i for i, v in enumerate(first) if v.count(",") == PIXELS - 1), -1)
    if feature < 0 or label < 0:
        raise DataError(
            f"{path}: expected a header row with a 'label' column and a feature column of {PIXELS} "
            f"comma-separated values (IRIS img2tsv/splitter output), got columns {header}"
        )
    return feature, label


def iter_iris_tsv(
    path: str | os.PathLike[str], num_classes: int, *, split: str | None = None, eval_percent: int = 20
) -> Iterator[Example]:
    """Examples of one IRIS TSV file (header row; feature, label (one-hot) and tag columns)."""
    name = storage.basename(str(path))
    with storage.open_text(str(path)) as f:
        header_line = f.readline()
        if not header_line.strip():
            raise DataError(f"{path}: empty TSV file; expected a header row and data rows")
        header = header_line.rstrip("\r\n").split("\t")
        columns: tuple[int, int] | None = None
        for lineno, line in enumerate(f, start=2):
            if not line.strip():
                continue
            cells = line.rstrip("\r\n").split("\t")
            if columns is None:
                columns = _tsv_columns(header, cells, str(path))
            source = f"{name}:{lineno}"
            if split is not None and not in_split(source, split, eval_percent):
                continue
            if len(cells) <= max(columns):
                raise DataError(f"{path} line {lineno}: expected {len(header)} tab-separated columns")
            label = check_label(parse_onehot(cells[columns[1]], source), num_classes, f"{path} line {lineno}")
            yield source, parse_feature(cells[columns[0]], f"{path} line {lineno}"), label


# --------------------------------------------------------------------------------------------
# TFRecord files of tf.Example (our layout)


def is_tfrecord_name(name: str) -> bool:
    lowered = name.lower()
    return "tfrecord" in lowered


def iter_tfrecord_records(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The raw records of a TFRecord file (gzipped or not); CRCs are not checked."""
    with _open_maybe_gz(path) as f:
        index = 0
        while True:
            head = f.read(12)
            if not head:
                return
            if len(head) < 12:
                raise DataError(f"{path}: truncated TFRecord file after {index} records")
            (length,) = struct.unpack("<Q", head[:8])
            data = f.read(length)
            if len(data) < length or len(f.read(4)) < 4:
                raise DataError(f"{path}: truncated TFRecord file after {index} records")
            index += 1
            yield data


def parse_example(record: bytes, source: str, num_classes: int) -> tuple[np.ndarray, int]:
    """Validate a serialized tf.Example in our layout -> ``(pixels [28, 28], label)``.

    ``image`` must hold 784 int64 values 0..255 (or 784 floats in [0, 1]); ``label`` one int64.
    """
    from tensorflow.core.example import example_pb2  # lazy: only TFRecord input needs it

    try:
        example = example_pb2.Example.FromString(record)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others
        raise DataError(f"{source}: not a serialized tf.Example ({exc})") from exc
    feats = example.features.feature
    if TFX_MNIST_IMAGE in feats and TFX_MNIST_LABEL in feats and features.IMAGE_KEY not in feats:
        return _parse_tfx_mnist(feats, source, num_classes)
    missing = [k for k in (features.IMAGE_KEY, features.LABEL_KEY) if k not in feats]
    if missing:
        raise DataError(
            f"{source}: tf.Example lacks feature(s) {missing} (has {sorted(feats)}); expected "
            f"'{features.IMAGE_KEY}' (int64 x {PIXELS}, 0..255) and '{features.LABEL_KEY}' (int64)"
        )
    image, label = feats[features.IMAGE_KEY], feats[features.LABEL_KEY]
    if image.HasField("int64_list"):
        arr = np.asarray(image.int64_list.value, dtype=np.int64)
        scale = 1.0
    elif image.HasField("float_list"):
        arr = np.asarray(image.float_list.value, dtype=np.float64)
        scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0
    else:
        arr, scale = np.zeros(0), 1.0
    if arr.size != PIXELS or arr.min(initial=0) < 0 or arr.max(initial=0) * scale > 255:
        raise DataError(
            f"{source}: feature '{features.IMAGE_KEY}' must hold {PIXELS} grey values 0..255, got "
            f"{arr.size} values in [{arr.min(initial=0)}, {arr.max(initial=0)}]"
        )
    if not label.HasField("int64_list") or len(label.int64_list.value) != 1:
        raise DataError(f"{source}: feature '{features.LABEL_KEY}' must be one int64 class index")
    pixels = np.round(arr * scale).astype(np.uint8).reshape(SIDE, SIDE)
    return pixels, check_label(int(label.int64_list.value[0]), num_classes, source)


# TFX's own MNIST example (tfx/examples/mnist/data/mnist.tfrecord): 784 floats pixel/255 - 0.5.
TFX_MNIST_IMAGE, TFX_MNIST_LABEL = "image_floats", "image_class"


def _parse_tfx_mnist(feats: Any, source: str, num_classes: int) -> tuple[np.ndarray, int]:
    """A record of TFX's MNIST example (``image_floats`` in [-0.5, 0.5], ``image_class``)."""
    arr = np.asarray(feats[TFX_MNIST_IMAGE].float_list.value, dtype=np.float64)
    label = feats[TFX_MNIST_LABEL].int64_list.value
    if arr.size != PIXELS or arr.min(initial=0) < -0.5 - 1e-6 or arr.max(initial=0) > 0.5 + 1e-6:
        raise DataError(f"{source}: feature '{TFX_MNIST_IMAGE}' must hold {PIXELS} floats in "
                        f"[-0.5, 0.5] (TFX's MNIST example), got {arr.size} values")
    if len(label) != 1:
        raise DataError(f"{source}: feature '{TFX_MNIST_LABEL}' must be one int64 class index")
    pixels = np.clip(np.round((arr + 0.5) * 255.0), 0, 255).astype(np.uint8).reshape(SIDE, SIDE)
    return pixels, check_label(int(label[0]), num_classes, source)


def iter_tfrecord(
    path: str | os.PathLike[str], num_classes: int, *, split: str | None = None, eval_percent: int = 20
) -> Iterator[Example]:
    name = storage.basename(str(path))
    for i, record in enumerate(iter_tfrecord_records(path)):
        source = f"{name}#{i}"
        if split is None or in_split(source, split, eval_percent):
            pixels, label = parse_example(record, f"{path} record {i}", num_classes)
            yield source, pixels, label


# --------------------------------------------------------------------------------------------
# tf.Example serialization without TensorFlow


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return bytes([tag << 3 | 2]) + _varint(len(payload)) + payload


def _int64_feature_entry(key: str, packed: bytes) -> bytes:
    # map<string, Feature> entry {1: key, 2: Feature{3: Int64List{1: packed values}}}
    feature = _field(3, _field(1, packed))
    return _field(1, _field(1, key.encode()) + _field(2, feature))


def _packed_pixels(flat: np.ndarray) -> list[bytes]:
    """Varint-encode rows of uint8 values, vectorised: values >= 128 take two bytes."""
    n = flat.shape[0]
    hi = flat >= 128
    two = np.empty((n, flat.shape[1], 2), dtype=np.uint8)
    two[..., 0] = np.where(hi, (flat & 0x7F) | 0x80, flat)
    two[..., 1] = 1
    mask = np.ones_like(two, dtype=bool)
    mask[..., 1] = hi
    buf = two[mask].tobytes()
    ends = np.cumsum(flat.shape[1] + hi.sum(axis=1))
    starts = np.concatenate([[0], ends[:-1]])
    return [buf[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=False)]


_LABEL_ENTRIES = [_int64_feature_entry(features.LABEL_KEY, _varint(i))
                  for i in range(features.MAX_CLASSES)]


def to_tf_examples(pixels: np.ndarray, labels: np.ndarray | Sequence[int]) -> list[bytes]:
    """Serialized tf.Examples (``image`` int64 x 784, ``label`` int64) for a batch [n, 28, 28]."""
    flat = np.asarray(pixels, dtype=np.uint8).reshape(len(labels), PIXELS)
    out = []
    for packed, label in zip(_packed_pixels(flat), np.asarray(labels).tolist(), strict=False):
        if not 0 <= label < len(_LABEL_ENTRIES):
            raise DataError(f"label {label} must be a class index 0..{features.MAX_CLASSES - 1}")
        body = _int64_feature_entry(features.IMAGE_KEY, packed) + _LABEL_ENTRIES[label]
        out.append(_field(1, body))
    return out


def to_tf_example(pixels: np.ndarray, label: int) -> bytes:
    """One serialized tf.Example in our layout from uint8 [28, 28] pixels and a class index."""
    return to_tf_examples(np.asarray(pixels)[None], [label])[0]
