"""Tiny synthetic datasets for tests, in every input layout ExampleGen reads.

Images are learnable: class k is a bright 6x6 square at a class-specific place, plus noise.
All functions are deterministic (``seed``) and return the path they wrote.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from datasources import readers

DIGITS = tuple(range(10))


def synthetic_images(labels: Sequence[int], seed: int = 0, size: int = 28) -> np.ndarray:
    """uint8 [n, size, size] images, white on black; class k's square sits in a k-specific place."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(len(labels), 28, 28)).astype(np.uint8)
    for image, label in zip(images, labels, strict=False):
        top, left = 3 + (label % 5) * 4, 4 + (label // 5) * 12
        image[top : top + 6, left : left + 6] = 200 + rng.integers(0, 56)
    if size != 28:
        from PIL import Image

        images = np.stack([np.asarray(Image.fromarray(i).resize((size, size))) for i in images])
    return images


def _write_png(path: Path, pixels: np.ndarray, mode: str = "L") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(pixels, mode="L")
    if mode != "L":
        img = img.convert(mode)
    img.save(path)


def write_png_folder(
    root: str | Path,
    n_per_class: int = 5,
    split_folders: bool = False,
    size: int = 28,
    classes: Sequence[int] = DIGITS,
    seed: int = 0,
    mode: str = "L",
    split_names: tuple[str, str] = ("training", "testing"),
) -> Path:
    """PNGs as ``root/<label>/<n>.png`` or, with ``split_folders``, ``root/training/<label>/``
    (n_per_class each) and ``root/testing/<label>/`` (max(1, n_per_class // 4) each)."""
    root = Path(root)
    if split_folders:
        plan = [(root / split_names[0], n_per_class), (root / split_names[1], max(1, n_per_class // 4))]
    else:
        plan = [(root, n_per_class)]
    for offset, (base, n) in enumerate(plan):
        labels = [c for c in classes for _ in range(n)]
        images = synthetic_images(labels, seed + offset, size)
        for i, (label, image) in enumerate(zip(labels, images, strict=True)):
            _write_png(base / str(label) / f"{i}.png", image, mode)
    return root


def write_idx(
    root: str | Path, n: int, prefix: str = "train", gz: bool = True, n_labels: int | None = None,
    seed: int = 0,
) -> tuple[Path, Path]:
    """``<prefix>-images-idx3-ubyte[.gz]`` and ``<prefix>-labels-idx1-ubyte[.gz]`` with n images
    (and ``n_labels`` labels, default n: set it to write a mismatched pair)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    n_labels = n if n_labels is None else n_labels
    labels = np.arange(max(n, n_labels)) % 10
    images = synthetic_images(labels[:n].tolist(), seed)
    suffix = ".gz" if gz else ""
    opener = gzip.open if gz else open
    images_path = root / f"{prefix}-images-idx3-ubyte{suffix}"
    labels_path = root / f"{prefix}-labels-idx1-ubyte{suffix}"
    with opener(images_path, "wb") as f:
        f.write(struct.pack(">IIII", readers.IDX_IMAGES_MAGIC, n, 28, 28) + images.tobytes())
    with opener(labels_path, "wb") as f:
        f.write(struct.pack(">II", readers.IDX_LABELS_MAGIC, n_labels) + labels[:n_labels].astype(np.uint8).tobytes())
    return images_path, labels_path


def write_tfrecord(path: str | Path, n: int, seed: int = 0, records: Sequence[bytes] | None = None) -> Path:
    """A gzipped TFRecord file of n tf.Examples in our layout (or the given raw ``records``)."""
    import tensorflow as tf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if records is None:
        labels = [i % 10 for i in range(n)]
        records = readers.to_tf_examples(synthetic_images(labels, seed), labels)
    options = "GZIP" if path.name.endswith(".gz") else None
    with tf.io.TFRecordWriter(str(path), options=options) as writer:
        for record in records:
            writer.write(record)
    return path


def iris_rows(labels: Sequence[int], float_features: bool = True, seed: int = 0) -> list[str]:
    """IRIS img2tsv rows ``feature<TAB>label<TAB>tag`` (feature: 784 values, label: one-hot)."""
    from modules.features import DIGIT_CLASS_NAMES

    rows = []
    for image, label in zip(synthetic_images(labels, seed), labels, strict=False):
        flat = image.reshape(-1)
        feature = ",".join(f"{v / 255:.6g}" for v in flat) if float_features else ",".join(map(str, flat))
        onehot = ",".join("1" if i == label else "0" for i in range(10))
        rows.append(f"{feature}\t{onehot}\t{DIGIT_CLASS_NAMES[label]}")
    return rows


def write_iris_tsv(
    root: str | Path, n_per_class: int = 4, float_features: bool = True, dictionary: bool = True,
    class_names: Sequence[str] | None = None, seed: int = 0,
) -> Path:
    """IRIS splitter output: ``train.tsv`` (n_per_class each), ``test.tsv`` (1 each), ``dict.tsv``."""
    from modules.features import DIGIT_CLASS_NAMES

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.tsv", n_per_class), ("test.tsv", 1)):
        labels = [c for c in DIGITS for _ in range(n)]
        rows = iris_rows(labels, float_features, seed + len(name))
        (root / name).write_text("feature\tlabel\ttag\n" + "\n".join(rows) + "\n", encoding="utf-8")
    if dictionary:
        names = class_names or DIGIT_CLASS_NAMES
        lines = ["label\ttag"] + [
            ",".join("1" if i == k else "0" for i in range(10)) + f"\t{names[k]}" for k in DIGITS
        ]
        (root / "dict.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def run_example_gen_executor(
    data: str | Path, output_dir: str | Path, *, eval_percent: int = 20,
    class_names: Sequence[str] | None = None,
) -> dict[str, list[bytes]]:
    """Run our ExampleGen executor's ``Do`` directly (no orchestrator, in-memory Beam) and return
    the serialized examples of each output split."""
    from google.protobuf import message
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.types import artifact_utils, standard_artifacts
    from tfx.utils import proto_utils

    from pipeline.components.image_example_gen import make_example_gen
    from pipeline.components.image_example_gen_executor import Executor

    component = make_example_gen(str(data), eval_percent=eval_percent, class_names=class_names)
    exec_properties = {
        k: proto_utils.proto_to_json(v) if isinstance(v, message.Message) else v
        for k, v in component.exec_properties.items()
        if v is not None
    }
    examples = standard_artifacts.Examples()
    examples.uri = str(output_dir)
    context = BaseBeamExecutor.Context(
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    )
    Executor(context).Do({}, {"examples": [examples]}, exec_properties)
    splits = artifact_utils.decode_split_names(examples.split_names)
    return {split: read_split(artifact_utils.get_split_uri([examples], split)) for split in splits}


def read_split(split_dir: str | Path) -> list[bytes]:
    """All serialized records of an ExampleGen output split directory (gzipped TFRecords)."""
    records: list[bytes] = []
    for path in sorted(Path(split_dir).iterdir()):
        records.extend(readers.iter_tfrecord_records(path))
    return records


def letter_images(letters: Sequence[str], n_per_class: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """``(letter, uint8 [28, 28])`` pairs: each letter drawn with PIL's built-in font, scaled to
    about 20 px, at a random offset of up to 2 px, plus noise (learnable, not trivial)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    rng = np.random.default_rng(seed)
    out = []
    for letter in letters:
        glyph = Image.new("L", (12, 14))
        ImageDraw.Draw(glyph).text((2, 1), letter, fill=255, font=font)
        big = np.asarray(glyph.resize((18, 20), Image.NEAREST))
        for _ in range(n_per_class):
            image = rng.integers(0, 30, size=(28, 28)).astype(np.uint8)
            top, left = 4 + rng.integers(-2, 3), 5 + rng.integers(-2, 3)
            region = image[top:top + 20, left:left + 18]
            np.maximum(region, big, out=region)
            out.append((letter, image))
    return out


def write_named_folder(root: str | Path, items: Sequence[tuple[str, np.ndarray]]) -> Path:
    """``root/<name>/<n>.png`` for ``(name, pixels)`` items (label folders named by class)."""
    root = Path(root)
    for n, (name, pixels) in enumerate(items):
        _write_png(root / name / f"{n}.png", pixels)
    return root


def export_tiny_model(path: Path) -> Path:
    """An untrained tiny CNN exported as our serving SavedModel (three signatures, dict.tsv)."""
    from modules.hparams import HParams
    from modules.model import build_model
    from modules.signatures import export_serving_model

    hp = HParams(filters_1=4, filters_2=8, hidden_units_1=16, hidden_units_2=16, epochs=1,
                 augment=False)
    export_serving_model(build_model(hp), str(path))
    return path
