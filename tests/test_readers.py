"""Unit tests of the pure readers, detect_layout and the data sources (no TFX run)."""

from __future__ import annotations

import gzip
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasources import readers
from modules import features
from pipeline import datasets
from pipeline.components.image_example_gen import DataError, detect_layout
from tests import datagen

DIGITS = readers.features.DIGIT_CLASS_NAMES


def _png_bytes(array: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


# --- serialization ---------------------------------------------------------------------------


def test_to_tf_examples_parse_back_with_tensorflow() -> None:
    import tensorflow as tf

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    pixels[0] = 0
    pixels[1] = 255
    labels = [0, 9, 3, 127 % 10, 5, 1]
    for image, label, record in zip(pixels, labels, readers.to_tf_examples(pixels, labels), strict=True):
        example = tf.train.Example.FromString(record)
        assert list(example.features.feature["image"].int64_list.value) == image.reshape(-1).tolist()
        assert list(example.features.feature["label"].int64_list.value) == [label]
        assert sorted(example.features.feature) == ["image", "label"]
    assert readers.to_tf_example(pixels[2], 3) == readers.to_tf_examples(pixels[2:3], [3])[0]


def test_to_tf_examples_is_fast_enough_for_fashion_mnist() -> None:
    pixels = datagen.synthetic_images([i % 10 for i in range(10_000)])
    start = time.perf_counter()
    records = readers.to_tf_examples(pixels, np.arange(10_000) % 10)
    assert len(records) == 10_000
    assert time.perf_counter() - start < 3.0  # about 0.2 s here; 70k stays a few seconds


# --- images ----------------------------------------------------------------------------------


def test_decode_image_keeps_28x28_grey_exactly() -> None:
    image = datagen.synthetic_images([4])[0]
    assert np.array_equal(readers.decode_image(_png_bytes(image), "x.png"), image)


def test_decode_image_converts_colour_to_grey() -> None:
    image = datagen.synthetic_images([2])[0]
    decoded = readers.decode_image(_png_bytes(image, "RGB"), "x.png")
    assert decoded.shape == (28, 28) and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - image).max() <= 1


def test_decode_image_resizes_other_sizes() -> None:
    big = np.kron(datagen.synthetic_images([7])[0], np.ones((2, 2), dtype=np.uint8))  # 56x56
    decoded = readers.decode_image(_png_bytes(big), "big.png")
    assert decoded.shape == (28, 28)
    assert np.abs(decoded.astype(int) - datagen.synthetic_images([7])[0]).mean() < 10
    wide = np.zeros((20, 30), dtype=np.uint8)  # 1.5:1 is padded to a square, not stretched
    wide[:, 10:20] = 255
    decoded = readers.decode_image(_png_bytes(wide), "wide.png")
    assert decoded.shape == (28, 28)
    assert decoded[:4].max() < 30 and decoded[14, 14] > 200  # black padding top, stroke centred


def test_decode_image_rescales_16_bit_grey() -> None:
    grey16 = (datagen.synthetic_images([1])[0].astype(np.uint16) * 257)
    buf = io.BytesIO()
    Image.fromarray(grey16, mode="I;16").save(buf, format="PNG")
    decoded = readers.decode_image(buf.getvalue(), "x16.png")
    assert np.abs(decoded.astype(int) - datagen.synthetic_images([1])[0]).max() <= 1


def test_iter_image_folder_labels_and_hidden_files(tmp_path: Path) -> None:
    root = datagen.write_png_folder(tmp_path / "d", n_per_class=2, classes=(0, 3))
    (root / ".DS_Store").write_bytes(b"\0junk")
    (root / "3" / ".DS_Store").write_bytes(b"\0junk")
    (root / "README.md").write_text("notes at the root are ignored")
    items = list(readers.iter_image_folder(root, None, DIGITS))
    assert sorted(source for source, _, _ in items) == ["0/0.png", "0/1.png", "3/2.png", "3/3.png"]
    assert all(label == int(source[0]) for source, _, label in items)
    expected = datagen.synthetic_images([0, 0, 3, 3])[0]
    assert np.array_equal(dict((s, p) for s, p, _ in items)["0/0.png"], expected)


def test_label_folders_may_be_class_names(tmp_path: Path) -> None:
    datagen.write_png_folder(tmp_path, n_per_class=1, classes=(0,))
    (tmp_path / "0").rename(tmp_path / "Trouser")
    files = readers.list_image_files(tmp_path, None, features.FASHION_MNIST_CLASS_NAMES)
    assert files == [("Trouser/0.png", 1)]


def test_hash_split_is_stable_and_near_the_percentage() -> None:
    keys = [f"{d}/{i}.png" for d in range(10) for i in range(300)]
    evals = [k for k in keys if readers.in_split(k, "eval", 20)]
    assert evals == [k for k in keys if readers.in_split(k, "eval", 20)]
    assert 0.17 < len(evals) / len(keys) < 0.23
    assert all(readers.in_split(k, "train", 20) != readers.in_split(k, "eval", 20) for k in keys)
    more = {k for k in keys if readers.in_split(k, "eval", 30)}
    assert set(evals) <= more  # growing eval_percent only moves files train -> eval


# --- IDX -------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_pair(tmp_path: Path, gz: bool) -> None:
    images_path, labels_path = datagen.write_idx(tmp_path, 25, gz=gz)
    images, labels = readers.read_idx_pair(str(images_path), str(labels_path), 10)
    assert images.shape == (25, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == [i % 10 for i in range(25)]
    assert np.array_equal(images, datagen.synthetic_images(labels.tolist()))
    header = readers.read_idx_header(images_path)
    assert (header.kind, header.count, header.rows, header.cols) == ("images", 25, 28, 28)


def test_find_idx_pairs() -> None:
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte", "README"]
    assert readers.find_idx_pairs(names) == {
        "t10k": {"images": "t10k-images-idx3-ubyte", "labels": "t10k-labels-idx1-ubyte"},
        "train": {"images": "train-images-idx3-ubyte.gz", "labels": "train-labels-idx1-ubyte.gz"},
    }


# --- IRIS TSV --------------------------------------------------------------------------------


@pytest.mark.parametrize("float_features", [True, False])
def test_iter_iris_tsv(tmp_path: Path, float_features: bool) -> None:
    root = datagen.write_iris_tsv(tmp_path, n_per_class=2, float_features=float_features)
    items = list(readers.iter_iris_tsv(root / "train.tsv", 10))
    labels = [label for _, _, label in items]
    assert labels == [c for c in range(10) for _ in range(2)]
    expected = datagen.synthetic_images(labels, seed=len("train.tsv"))
    for (_, pixels, _), want in zip(items, expected, strict=True):
        assert np.abs(pixels.astype(int) - want).max() <= 1


def test_iris_columns_found_by_header_in_any_order(tmp_path: Path) -> None:
    row = datagen.iris_rows([6])[0].split("\t")
    (tmp_path / "train.tsv").write_text(f"tag\tlabel\tfeature\n{row[2]}\t[{row[1]}]\t{row[0]}\n")
    [(source, _, label)] = list(readers.iter_iris_tsv(tmp_path / "train.tsv", 10))
    assert (source, label) == ("train.tsv:2", 6)


def test_parse_onehot_and_integers() -> None:
    assert readers.parse_onehot("0,0,1,0", "x") == 2
    assert readers.parse_onehot("[0, 1]", "x") == 1
    assert readers.parse_onehot("7", "x") == 7
    with pytest.raises(DataError, match="one-hot"):
        readers.parse_onehot("1,1,0", "x")


# --- TFRecord --------------------------------------------------------------------------------


def test_iter_tfrecord_roundtrip(tmp_path: Path) -> None:
    path = datagen.write_tfrecord(tmp_path / "data.tfrecord.gz", 12)
    items = list(readers.iter_tfrecord(path, 10))
    assert [label for _, _, label in items] == [i % 10 for i in range(12)]
    assert np.array_equal(np.stack([p for _, p, _ in items]), datagen.synthetic_images([i % 10 for i in range(12)]))


def test_parse_example_accepts_float_pixels_in_unit_range() -> None:
    import tensorflow as tf

    image = datagen.synthetic_images([8])[0]
    example = tf.train.Example()
    example.features.feature["image"].float_list.value.extend((image.reshape(-1) / 255.0).tolist())
    example.features.feature["label"].int64_list.value.append(8)
    example.features.feature["extra"].bytes_list.value.append(b"kept out")
    pixels, label = readers.parse_example(example.SerializeToString(), "x", 10)
    assert label == 8 and np.array_equal(pixels, image)


# --- detect_layout ---------------------------------------------------------------------------


def test_detect_image_folder_with_split_folders(tmp_path: Path) -> None:
    datagen.write_png_folder(tmp_path, n_per_class=4, split_folders=True)
    layout = detect_layout(str(tmp_path))
    assert layout.kind == "image_folder_split"
    assert layout.splits == {"train": "training/*/*", "eval": "testing/*/*"}
    assert layout.num_examples == {"train": 40, "eval": 10} and layout.num_files == 50
    assert layout.class_names is None and not layout.hash_split


def test_detect_prefers_validation_over_test(tmp_path: Path) -> None:
    for split in ("train", "validation", "test"):
        datagen.write_png_folder(tmp_path / split, n_per_class=1, classes=(1, 2))
    layout = detect_layout(str(tmp_path), class_names=DIGITS)
    assert layout.splits == {"train": "train/*/*", "eval": "validation/*/*"}


def test_detect_flat_image_folder_hash_split(tmp_path: Path) -> None:
    datagen.write_png_folder(tmp_path, n_per_class=10)
    layout = detect_layout(str(tmp_path), eval_percent=30)
    assert layout.kind == "image_folder" and layout.hash_split
    names = [p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/*.png")]
    expected_eval = sum(readers.in_split(name, "eval", 30) for name in names)
    assert layout.num_examples == {"train": 100 - expected_eval, "eval": expected_eval}


def test_detect_idx(tmp_path: Path) -> None:
    datagen.write_idx(tmp_path, 30)
    datagen.write_idx(tmp_path, 10, prefix="t10k", gz=False)
    layout = detect_layout(str(tmp_path))
    assert (layout.kind, layout.splits) == ("idx", {"train": "train-*", "eval": "t10k-*"})
    assert layout.num_examples == {"train": 30, "eval": 10}


def test_detect_iris_tsv_reads_dictionary(tmp_path: Path) -> None:
    names = [f"c{i}" for i in range(10)]
    datagen.write_iris_tsv(tmp_path, class_names=names)
    layout = detect_layout(str(tmp_path))
    assert (layout.kind, layout.splits) == ("iris_tsv", {"train": "train.tsv", "eval": "test.tsv"})
    assert layout.class_names == tuple(names)


def test_detect_tfrecord_flat_and_split_folders(tmp_path: Path) -> None:
    datagen.write_tfrecord(tmp_path / "flat" / "data.tfrecord.gz", 5)
    assert detect_layout(str(tmp_path / "flat")).splits == {"train": "*tfrecord*", "eval": "*tfrecord*"}
    datagen.write_tfrecord(tmp_path / "tfx" / "Split-train" / "data_tfrecord-00000-of-00001.gz", 5)
    datagen.write_tfrecord(tmp_path / "tfx" / "Split-eval" / "data_tfrecord-00000-of-00001.gz", 5)
    layout = detect_layout(str(tmp_path / "tfx"))
    assert layout.kind == "tfrecord"
    assert layout.splits == {"train": "Split-train/*tfrecord*", "eval": "Split-eval/*tfrecord*"}


def test_detect_single_files(tmp_path: Path) -> None:
    record = datagen.write_tfrecord(tmp_path / "d" / "mnist.tfrecord", 3)
    (tmp_path / "d" / "notes.txt").write_text("other files in the folder do not matter")
    layout = detect_layout(str(record))
    assert (layout.kind, layout.root, layout.splits) == (
        "tfrecord", str((tmp_path / "d").resolve()), {"train": "mnist.tfrecord", "eval": "mnist.tfrecord"}
    )
    tsv = datagen.write_iris_tsv(tmp_path / "iris") / "train.tsv"
    layout = detect_layout(str(tsv))
    assert (layout.kind, layout.splits["eval"]) == ("iris_tsv", "train.tsv")
    assert layout.class_names == features.DIGIT_CLASS_NAMES
    images, _ = datagen.write_idx(tmp_path / "idx", 4)
    assert detect_layout(str(images)).kind == "idx"
    with pytest.raises(DataError, match="a single file must be"):
        detect_layout(str(tmp_path / "d" / "notes.txt"))


def test_detect_layout_does_not_import_tensorflow(tmp_path: Path) -> None:
    import subprocess
    import sys

    datagen.write_png_folder(tmp_path, n_per_class=2)
    code = (
        "import sys; from pipeline.components.image_example_gen import detect_layout; "
        f"detect_layout({str(tmp_path)!r}); print('tensorflow' in sys.modules, 'tfx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.split() == ["False", "False"]


# --- datasets --------------------------------------------------------------------------------


def test_upscale_digit_is_mnist_like() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    image = datasets.upscale_digit(digits.images[0])
    assert image.shape == (28, 28) and image.dtype == np.uint8
    assert image[:4].max() == 0 and image[-4:].max() == 0 and image[:, :4].max() == 0
    assert image.max() > 200  # full 0..255 range, white ink on black


def test_materialize_digits_is_complete_and_idempotent(tmp_path: Path) -> None:
    dest = tmp_path / "data" / "digits"
    assert datasets.materialize_digits(str(dest)) == str(dest)
    pngs = sorted(dest.glob("*/*.png"))
    assert len(pngs) == datasets.DIGITS_COUNT
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == [str(d) for d in range(10)]
    assert [p.name for p in tmp_path.joinpath("data").iterdir()] == ["digits"]  # no temp dir left
    mtime = pngs[0].stat().st_mtime_ns
    datasets.materialize_digits(str(dest))
    assert pngs[0].stat().st_mtime_ns == mtime
    layout = detect_layout(str(dest))
    assert layout.kind == "image_folder" and sum(layout.num_examples.values()) == datasets.DIGITS_COUNT


def test_materialize_digits_refuses_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="remove it"):
        datasets.materialize_digits(str(tmp_path / "digits"))
    assert (tmp_path / "digits" / "mine.txt").read_text() == "keep me"


def test_resolve_data_defaults_and_class_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resolved = datasets.resolve_data(None, None, data_root=str(tmp_path))
    assert resolved.class_names == features.DIGIT_CLASS_NAMES
    assert Path(resolved.path) == (tmp_path / "digits").resolve()
    assert "digits" in resolved.description
    tsv = datagen.write_iris_tsv(tmp_path / "iris", class_names=[f"n{i}" for i in range(10)])
    assert datasets.resolve_data(str(tsv), None).class_names == tuple(f"n{i}" for i in range(10))
    assert datasets.resolve_data(str(tsv), None, class_names=list("abcdefghij")).class_names == tuple("abcdefghij")
    idx = tmp_path / "fashion"
    datagen.write_idx(idx, 10)
    assert datasets.resolve_data(str(idx), "fashion-mnist").class_names == features.FASHION_MNIST_CLASS_NAMES
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", str(idx))
    assert datasets.resolve_data(None, "fashion-mnist").path == str(idx)
    with pytest.raises(DataError, match="choose one of"):
        datasets.resolve_data(None, "cifar")


def test_fashion_mnist_missing_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", str(tmp_path / "nope"))
    with pytest.raises(DataError, match="sudo apt-get install dataset-fashion-mnist"):
        datasets.fashion_mnist_dir()


def test_gzip_detected_by_content_not_name(tmp_path: Path) -> None:
    images_path, labels_path = datagen.write_idx(tmp_path, 3, gz=False)
    gz_named = tmp_path / "x-images-idx3-ubyte"
    gz_named.write_bytes(gzip.compress(images_path.read_bytes()))
    assert readers.read_idx_header(gz_named).count == 3
