"""One test per bad-data case of issue 2 (part 5), at the reader level and, where the problem is
only visible when the files are read, through the ExampleGen executor (in-memory Beam).

Decisions (see docs/data.md): every case stops the run with a DataError naming the file; the
structural ones (unknown label folder, non-image file, empty input, IDX counts) already in
detect_layout, before TFX starts; the content ones (corrupted or unconvertible image) when the
executor reads the file, before the ExampleGen execution is published.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

import modules  # noqa: F401
from datasources import readers
from pipeline.components.image_example_gen import DataError, detect_layout, make_example_gen
from tests import datagen

DIGITS = readers.features.DIGIT_CLASS_NAMES


def _corrupt(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a truncated PNG: the header parses, the body does not


# --- a corrupted image -----------------------------------------------------------------------


def test_corrupted_image_reader_names_the_file(tmp_path: Path) -> None:
    root = datagen.write_png_folder(tmp_path, n_per_class=1, classes=(5,))
    bad = root / "5" / "0.png"
    _corrupt(bad)
    with pytest.raises(DataError, match=r"5/0\.png: cannot decode the image .*corrupted"):
        list(readers.iter_image_folder(root, None, DIGITS))
    garbage = root / "5" / "1.png"
    garbage.write_bytes(b"this is not a PNG at all")
    with pytest.raises(DataError, match=r"1\.png: cannot decode"):
        readers.read_image(garbage)


@pytest.mark.slow
def test_corrupted_image_stops_example_gen_with_the_file_name(tmp_path: Path) -> None:
    root = datagen.write_png_folder(tmp_path / "data", n_per_class=2, split_folders=True)
    _corrupt(root / "testing" / "3" / "3.png")
    with pytest.raises(DataError, match=r"testing/3/3\.png: cannot decode the image") as info:
        datagen.run_example_gen_executor(root, tmp_path / "out")
    assert "[while running" not in str(info.value)  # Beam's wrapping is removed


@pytest.mark.slow
def test_corrupted_image_fails_the_local_dag_run_and_publishes_nothing(tmp_path: Path) -> None:
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2

    from tests.test_example_gen import _run_pipeline

    root = datagen.write_png_folder(tmp_path / "data", n_per_class=2, split_folders=True)
    (root / "training" / "1" / "11.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    with pytest.raises(DataError, match=r"training/1/11\.png: cannot decode the image \(not a recognised"):
        _run_pipeline(root, tmp_path)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / "metadata.sqlite")
    examples = mlmd.MetadataStore(config).get_artifacts_by_type("Examples")
    assert all(a.state != metadata_store_pb2.Artifact.LIVE for a in examples)
    assert not list((tmp_path / "root").rglob("Split-*"))


# --- an image that is not 28x28 grey and cannot be converted ---------------------------------


@pytest.mark.parametrize("shape", [(4, 4), (28, 90), (0, 0)])
def test_unconvertible_image_reader(tmp_path: Path, shape: tuple[int, int]) -> None:
    from PIL import Image

    path = tmp_path / "odd.png"
    if shape == (0, 0):
        path.write_bytes(b"")  # a 0-byte file: nothing to decode
        match = "cannot decode"
    else:
        Image.fromarray(np.full(shape, 128, dtype=np.uint8)).convert("RGB").save(path)
        match = rf"{shape[1]}x{shape[0]} image cannot be converted to 28x28"
    with pytest.raises(DataError, match=match):
        readers.read_image(path)


def test_convertible_sizes_are_converted(tmp_path: Path) -> None:
    from PIL import Image

    for shape in [(8, 8), (28, 56), (300, 300)]:
        path = tmp_path / f"{shape}.png"
        Image.fromarray(np.zeros(shape, dtype=np.uint8)).convert("RGBA").save(path)
        assert readers.read_image(path).shape == (28, 28)


@pytest.mark.slow
def test_unconvertible_image_stops_example_gen(tmp_path: Path) -> None:
    from PIL import Image

    root = datagen.write_png_folder(tmp_path / "data", n_per_class=4)
    Image.fromarray(np.zeros((10, 200), dtype=np.uint8)).save(root / "2" / "strip.png")
    with pytest.raises(DataError, match=r"2/strip\.png: a 200x10 image cannot be converted"):
        datagen.run_example_gen_executor(root, tmp_path / "out")


# --- a label folder that is not a known class ------------------------------------------------


@pytest.mark.parametrize(("folder", "error"), [
    ("10", r"label folders are class indices 0\.\.10 but skip 4"),
    ("cat", r"label folders mix class indices \(0, 1, 2, 3, 5\) and names \(cat\)"),
    ("-1", r"label folders mix class indices .* and names \(-1\)"),
])
def test_unknown_label_folder_is_refused_before_the_run(tmp_path: Path, folder: str,
                                                        error: str) -> None:
    # Without class names, the label folders define the classes: indices 0..N-1 with none
    # missing, or names. A stray folder among index folders is named, before anything runs.
    root = datagen.write_png_folder(tmp_path, n_per_class=2, split_folders=True)
    for split in ("training", "testing"):
        (root / split / "4").rename(root / split / folder)
    with pytest.raises(DataError, match=error):
        detect_layout(str(root))
    with pytest.raises(DataError, match=error):
        make_example_gen(str(root))
    # With the class names given, the same folder is an unknown class.
    with pytest.raises(DataError, match=rf"training: label folder\(s\) {folder} are not known classes"):
        detect_layout(str(root), class_names=DIGITS)


def test_label_folder_beyond_the_given_class_names(tmp_path: Path) -> None:
    root = datagen.write_png_folder(tmp_path, n_per_class=2, classes=(0, 1, 2), split_folders=True)
    detect_layout(str(root))  # 0..2 are digits
    with pytest.raises(DataError, match=r"label folder\(s\) 2 are not known classes.*0\.\.1"):
        detect_layout(str(root), class_names=["cat", "dog"])


def test_label_out_of_range_in_idx_and_tsv(tmp_path: Path) -> None:
    images, labels = datagen.write_idx(tmp_path / "idx", 3, gz=False)
    raw = bytearray(labels.read_bytes())
    raw[-1] = 12
    labels.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"label 12 at index 2 .* outside the known classes 0\.\.9"):
        readers.read_idx_pair(str(images), str(labels), 10)
    row = datagen.iris_rows([1])[0].split("\t")
    (tmp_path / "train.tsv").write_text(f"feature\tlabel\ttag\n{row[0]}\t11\televen\n")
    with pytest.raises(DataError, match=r"train\.tsv line 2: label 11 is outside"):
        list(readers.iter_iris_tsv(tmp_path / "train.tsv", 10))


# --- a non-image file ------------------------------------------------------------------------


def test_non_image_file_in_a_label_folder_is_refused(tmp_path: Path) -> None:
    root = datagen.write_png_folder(tmp_path, n_per_class=2)
    (root / "7" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"7/notes\.txt: not image files .*move them out"):
        detect_layout(str(root))


def test_hidden_files_and_root_level_files_are_ignored(tmp_path: Path) -> None:
    root = datagen.write_png_folder(tmp_path, n_per_class=3, split_folders=True)
    for where in (root, root / "training", root / "training" / "1"):
        (where / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "README.txt").write_text("the data set")
    (root / "__MACOSX").mkdir()
    layout = detect_layout(str(root))
    assert layout.num_examples == {"train": 30, "eval": 10}


def test_image_outside_a_label_folder_is_refused(tmp_path: Path) -> None:
    root = datagen.write_png_folder(tmp_path, n_per_class=2)
    (root / "0" / "0.png").rename(root / "stray.png")
    with pytest.raises(DataError, match=r"stray\.png: images must be inside a label folder"):
        detect_layout(str(root))


# --- an empty input --------------------------------------------------------------------------


def test_empty_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or directory"):
        detect_layout(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="the input folder is empty"):
        detect_layout(str(tmp_path / "empty"))
    (tmp_path / "hidden_only").mkdir()
    (tmp_path / "hidden_only" / ".DS_Store").write_bytes(b"x")
    with pytest.raises(DataError, match="the input folder is empty"):
        detect_layout(str(tmp_path / "hidden_only"))
    for label in ("0", "1"):
        (tmp_path / "labels_only" / label).mkdir(parents=True)
    with pytest.raises(DataError, match="label folders hold no images"):
        detect_layout(str(tmp_path / "labels_only"))


def test_empty_split_folder(tmp_path: Path) -> None:
    root = datagen.write_png_folder(tmp_path, n_per_class=2, split_folders=True)
    for png in (root / "testing").glob("*/*.png"):
        png.unlink()
    with pytest.raises(DataError, match=r"testing: the eval split folder holds no images"):
        detect_layout(str(root))


def test_hash_split_that_would_leave_eval_empty(tmp_path: Path) -> None:
    root = datagen.write_png_folder(tmp_path, n_per_class=1, classes=(0,))
    with pytest.raises(DataError, match="split would be empty"):
        detect_layout(str(root), eval_percent=1, class_names=DIGITS)
    with pytest.raises(DataError, match="1 classes; a model needs between 2 and 1000"):
        detect_layout(str(root), eval_percent=1)


def test_empty_idx_and_tsv_files(tmp_path: Path) -> None:
    datagen.write_idx(tmp_path / "idx", 0)
    with pytest.raises(DataError, match="holds no images"):
        detect_layout(str(tmp_path / "idx"))
    (tmp_path / "tsv").mkdir()
    (tmp_path / "tsv" / "train.tsv").write_text("")
    with pytest.raises(DataError, match=r"train\.tsv: empty TSV file"):
        detect_layout(str(tmp_path / "tsv"))


@pytest.mark.slow
def test_tsv_with_only_a_header_stops_example_gen(tmp_path: Path) -> None:
    root = datagen.write_iris_tsv(tmp_path / "data", n_per_class=1)
    (root / "test.tsv").write_text("feature\tlabel\ttag\n")
    with pytest.raises(DataError, match=r"test\.tsv: the eval split holds no examples"):
        datagen.run_example_gen_executor(root, tmp_path / "out")


# --- IDX files whose counts disagree ---------------------------------------------------------


def test_idx_counts_disagree_is_refused_before_the_run(tmp_path: Path) -> None:
    datagen.write_idx(tmp_path, 20, n_labels=19)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz holds 20 images but .*"
                                        r"train-labels-idx1-ubyte\.gz holds 19 labels"):
        detect_layout(str(tmp_path))


def test_idx_missing_partner_and_truncated_body(tmp_path: Path) -> None:
    images, labels = datagen.write_idx(tmp_path / "a", 5)
    labels.unlink()
    with pytest.raises(DataError, match="has no matching labels file"):
        detect_layout(str(tmp_path / "a"))
    images, labels = datagen.write_idx(tmp_path / "b", 5)
    body = gzip.decompress(images.read_bytes())
    images.write_bytes(gzip.compress(body[:-100]))  # header says 5 images, body holds fewer
    detect_layout(str(tmp_path / "b"))  # headers agree: only reading finds it
    with pytest.raises(DataError, match=r"truncated: the header promises 5 images"):
        readers.read_idx_pair(str(images), str(labels), 10)


def test_idx_bad_magic(tmp_path: Path) -> None:
    images, labels = datagen.write_idx(tmp_path, 2, gz=False)
    images.write_bytes(struct.pack(">IIII", 0x0D03, 2, 28, 28) + b"\0" * 2 * 784)
    with pytest.raises(DataError, match="bad magic number"):
        detect_layout(str(tmp_path))


# --- TFRecord and TSV in the wrong layout ----------------------------------------------------


def test_tfrecord_with_other_features_is_refused(tmp_path: Path) -> None:
    import tensorflow as tf

    example = tf.train.Example()
    # (TFX's MNIST example's image_floats/image_class are read: tests/test_tfx_mnist_records.py)
    example.features.feature["pixels"].float_list.value.extend([0.0] * 784)
    example.features.feature["digit"].int64_list.value.append(1)
    path = datagen.write_tfrecord(tmp_path / "x.tfrecord", 0, records=[example.SerializeToString()])
    with pytest.raises(DataError, match=r"x\.tfrecord record 0: tf\.Example lacks feature\(s\) \['image', 'label'\]"):
        list(readers.iter_tfrecord(path, 10))


def test_tsv_feature_of_wrong_length(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("feature\tlabel\ttag\n" + ",".join(["0"] * 783) + "\t1,0\tzero\n")
    with pytest.raises(DataError, match=r"train\.tsv line 2: the feature column holds 783 values"):
        list(readers.iter_iris_tsv(tmp_path / "train.tsv", 10))
