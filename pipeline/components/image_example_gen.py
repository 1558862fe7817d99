"""Our ExampleGen: image folders, MNIST IDX, TFRecord and IRIS TSV in, tf.Examples out.

``detect_layout`` looks at a path (cheaply: directory listings and IDX headers, no TensorFlow)
and says which layout it holds and how it splits into ``train``/``eval``; ``make_example_gen``
turns that into a TFX ``FileBasedExampleGen`` whose Beam executor
(``pipeline/components/image_example_gen_executor.py``) reads the files.

Each split is given to TFX as a glob pattern relative to the input root, so TFX's driver
fingerprints the input files and caching works. When the train and eval patterns are the same,
the executor splits by a stable hash of each file's relative path (or ``file:row`` / ``file#index``
for files holding many examples), ``eval_percent`` percent going to eval.

See docs/data.md for the layouts and for what happens to bad data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules import features
from pipeline.components import readers
from pipeline.components.readers import DataError

__all__ = ["DataError", "InputLayout", "detect_layout", "make_example_gen", "LAYOUT_KINDS"]

LAYOUT_KINDS = ("image_folder_split", "image_folder", "idx", "tfrecord", "iris_tsv")
DICTIONARY_FILE = "dict.tsv"
COMPONENT_ID = "ExampleGen"


@dataclass(frozen=True)
class InputLayout:
    """What ``detect_layout`` found at a path."""

    kind: str  # one of LAYOUT_KINDS
    root: str  # absolute input directory (TFX's input_base)
    splits: dict[str, str]  # 'train'/'eval' -> glob pattern relative to root (same = hash split)
    class_names: tuple[str, ...] | None  # from a dict.tsv in the data, else None
    num_files: int
    num_examples: dict[str, int] = field(default_factory=dict)  # per split, when cheaply known

    @property
    def hash_split(self) -> bool:
        return self.splits["train"] == self.splits["eval"]

    def describe(self) -> str:
        how = "hash split" if self.hash_split else f"train={self.splits['train']} eval={self.splits['eval']}"
        counts = ", ".join(f"{k} {v}" for k, v in self.num_examples.items())
        return f"{self.kind} at {self.root} ({self.num_files} files; {how}{'; ' + counts if counts else ''})"


def _read_dictionary(root: Path) -> tuple[str, ...] | None:
    path = root / DICTIONARY_FILE
    if not path.is_file():
        return None
    try:
        return tuple(features.parse_dictionary(path.read_text(encoding="utf-8")))
    except ValueError as exc:
        raise DataError(f"{path}: {exc}; fix it (header 'label<TAB>tag', then one row per class)") from exc


def _empty(path: Path, what: str) -> DataError:
    return DataError(
        f"{path}: {what}. Point --data at a folder holding images in <label>/ folders "
        "(optionally under training/ and testing/), MNIST IDX files, TFRecord files or IRIS TSV files"
    )


def detect_layout(
    path: str, *, class_names: Sequence[str] | None = None, eval_percent: int = 20
) -> InputLayout:
    """Which input layout ``path`` holds, validated cheaply (listings and headers only).

    Raises DataError for a missing or empty input, an unknown layout, a label folder that is not a
    known class, a non-image file among the images, IDX files whose counts disagree, or a split
    that would be empty.
    """
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise DataError(f"{path}: no such file or directory; check --data")
    if root.is_file():
        return _single_file_layout(root)
    entries = readers.list_dir(root)
    if not entries:
        raise _empty(root, "the input folder is empty")
    names = [e.name for e in entries if e.is_file()]
    dirs = [e.name for e in entries if e.is_dir()]
    dictionary = _read_dictionary(root)
    names_for_labels = tuple(class_names or dictionary or features.DIGIT_CLASS_NAMES)
    if readers.find_idx_pairs(names):
        return _idx_layout(root, names, dictionary, names_for_labels, eval_percent)
    if any(n.lower().endswith(".tsv") and n != DICTIONARY_FILE for n in names):
        return _tsv_layout(root, names, dictionary)
    tfrecord_layout = _tfrecord_layout(root, names, dirs, dictionary)
    if tfrecord_layout is not None:
        return tfrecord_layout
    if dirs:
        return _image_layout(root, dirs, dictionary, names_for_labels, eval_percent)
    raise _empty(root, f"no supported input layout found (files: {', '.join(names[:10])})")


def _single_file_layout(path: Path) -> InputLayout:
    """One TFRecord or TSV file (hash-split), or one file of an IDX pair (its folder is read)."""
    name, parent = path.name, path.parent
    if readers.idx_prefix(name):
        return detect_layout(str(parent))
    dictionary = _read_dictionary(parent)
    if name.lower().endswith(".tsv") and name != DICTIONARY_FILE:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty TSV file; re-create it or remove it")
        return InputLayout("iris_tsv", str(parent), {"train": name, "eval": name}, dictionary, 1)
    if readers.is_tfrecord_name(name):
        return InputLayout("tfrecord", str(parent), {"train": name, "eval": name}, dictionary, 1)
    raise DataError(
        f"{path}: a single file must be a TFRecord (name containing 'tfrecord'), an IRIS .tsv or "
        "an MNIST IDX file; for images, point --data at their folder"
    )


# --------------------------------------------------------------------------------------------
# Image folders


def _split_folders(dirs: list[str]) -> tuple[str | None, str | None]:
    lowered = {d.lower(): d for d in dirs}
    train = next((lowered[n] for n in readers.TRAIN_SPLIT_NAMES if n in lowered), None)
    evals = next((lowered[n] for n in readers.EVAL_SPLIT_NAMES if n in lowered), None)
    return train, evals


def _image_layout(
    root: Path, dirs: list[str], dictionary: tuple[str, ...] | None, class_names: tuple[str, ...],
    eval_percent: int,
) -> InputLayout:
    split_dirs = [d for d in dirs if d.lower() in readers.SPLIT_FOLDER_NAMES]
    if not split_dirs:
        files = readers.list_image_files(root, None, class_names)
        if not files:
            raise _empty(root, "the label folders hold no images")
        pattern = "*/*"
        counts = _hash_counts([rel for rel, _ in files], eval_percent, root)
        return InputLayout("image_folder", str(root), {"train": pattern, "eval": pattern},
                           dictionary, len(files), counts)
    stray = sorted(set(dirs) - set(split_dirs))
    if stray:
        raise DataError(
            f"{root}: holds split folders ({', '.join(split_dirs)}) and other folders "
            f"({', '.join(stray)}); use either <split>/<label>/ or <label>/ folders, not both"
        )
    train, evals = _split_folders(split_dirs)
    if train is None or evals is None:
        only = train or evals
        assert only is not None
        files = readers.list_image_files(root, only, class_names)
        if not files:
            raise _empty(root / only, "the label folders hold no images")
        pattern = f"{only}/*/*"
        counts = _hash_counts([rel for rel, _ in files], eval_percent, root / only)
        return InputLayout("image_folder_split", str(root), {"train": pattern, "eval": pattern},
                           dictionary, len(files), counts)
    counts = {}
    for split, folder in (("train", train), ("eval", evals)):
        files = readers.list_image_files(root, folder, class_names)
        if not files:
            raise _empty(root / folder, f"the {split} split folder holds no images")
        counts[split] = len(files)
    return InputLayout("image_folder_split", str(root), {"train": f"{train}/*/*", "eval": f"{evals}/*/*"},
                       dictionary, sum(counts.values()), counts)


def _hash_counts(keys: list[str], eval_percent: int, where: Path) -> dict[str, int]:
    evals = sum(1 for k in keys if readers.in_split(k, "eval", eval_percent))
    counts = {"train": len(keys) - evals, "eval": evals}
    empty = [k for k, v in counts.items() if v == 0]
    if empty:
        raise DataError(
            f"{where}: the {empty[0]} split would be empty ({len(keys)} images, eval_percent "
            f"{eval_percent}); add images or use training/ and testing/ folders"
        )
    return counts


# --------------------------------------------------------------------------------------------
# IDX, TSV, TFRecord


def _idx_layout(
    root: Path, names: list[str], dictionary: tuple[str, ...] | None, class_names: tuple[str, ...],
    eval_percent: int,
) -> InputLayout:
    pairs = readers.find_idx_pairs(names)
    counts: dict[str, int] = {}
    for prefix, pair in pairs.items():
        if set(pair) != {"images", "labels"}:
            have = next(iter(pair.values()))
            missing = "labels" if "images" in pair else "images"
            raise DataError(
                f"{root / have}: has no matching {missing} file "
                f"({prefix}-{missing}-idx{'1' if missing == 'labels' else '3'}-ubyte[.gz]); add it"
            )
        images, _ = readers.check_idx_pair(str(root / pair["images"]), str(root / pair["labels"]))
        counts[prefix] = images.count
    train = next((p for p in pairs if p.lower() in readers.TRAIN_SPLIT_NAMES), None)
    evals = next((p for p in pairs if p.lower() in ("t10k",) + readers.EVAL_SPLIT_NAMES), None)
    if train and evals:
        splits = {"train": f"{train}-*", "eval": f"{evals}-*"}
        num = {"train": counts[train], "eval": counts[evals]}
    else:
        only = train or evals or sorted(pairs)[0]
        splits = {"train": f"{only}-*", "eval": f"{only}-*"}
        num = {"all": counts[only]}
    del class_names  # labels are checked when the files are read (they sit in the file body)
    return InputLayout("idx", str(root), splits, dictionary, 2 * len(pairs), num)


def _tsv_layout(root: Path, names: list[str], dictionary: tuple[str, ...] | None) -> InputLayout:
    tsvs = [n for n in names if n.lower().endswith(".tsv") and n != DICTIONARY_FILE]
    lowered = {n.lower(): n for n in tsvs}
    train = lowered.get("train.tsv")
    evals = next((lowered[f"{n}.tsv"] for n in readers.EVAL_SPLIT_NAMES if f"{n}.tsv" in lowered), None)
    for name in tsvs:
        if (root / name).stat().st_size == 0:
            raise DataError(f"{root / name}: empty TSV file; re-create it or remove it")
    if train and evals:
        splits = {"train": train, "eval": evals}
    else:  # img2tsv output before splitter (0.tsv ... 9.tsv): hash split of the rows
        splits = {"train": "*.tsv", "eval": "*.tsv"}
    return InputLayout("iris_tsv", str(root), splits, dictionary, len(tsvs))


def _tfrecord_layout(
    root: Path, names: list[str], dirs: list[str], dictionary: tuple[str, ...] | None
) -> InputLayout | None:
    records = [n for n in names if readers.is_tfrecord_name(n)]
    if records:
        return InputLayout("tfrecord", str(root), {"train": "*tfrecord*", "eval": "*tfrecord*"},
                           dictionary, len(records))
    # Split folders of TFRecords: train/ + eval/, or TFX's own Split-train/ + Split-eval/.
    plain = {d.removeprefix("Split-").lower(): d for d in dirs}
    train, evals = _split_folders(list(plain))
    if not (train and evals):
        return None
    counts = {}
    for split in (train, evals):
        folder = root / plain[split]
        counts[split] = sum(1 for e in readers.list_dir(folder) if e.is_file() and readers.is_tfrecord_name(e.name))
    if not all(counts.values()):
        return None
    splits = {"train": f"{plain[train]}/*tfrecord*", "eval": f"{plain[evals]}/*tfrecord*"}
    return InputLayout("tfrecord", str(root), splits, dictionary, sum(counts.values()))


# --------------------------------------------------------------------------------------------
# The TFX component


def layout_config(
    path: str, layout: InputLayout, class_names: Sequence[str], eval_percent: int
) -> dict[str, Any]:
    """What the executor needs beyond the split patterns (travels in ``custom_config``)."""
    return {
        "path": str(Path(path).expanduser().resolve()),  # re-validated when the executor starts
        "kind": layout.kind,
        "class_names": list(class_names),
        "eval_percent": eval_percent,
    }


def make_example_gen(
    path: str, *, eval_percent: int = 20, class_names: Sequence[str] | None = None
) -> Any:
    """A TFX ExampleGen (id ``ExampleGen``) reading ``path``; output splits ``train`` and ``eval``.

    ``class_names`` defaults to a dict.tsv in the data, else the digits zero..nine.
    """
    if not 1 <= eval_percent <= 99:
        raise ValueError(f"eval_percent must be 1..99, got {eval_percent}")
    layout = detect_layout(path, class_names=class_names, eval_percent=eval_percent)
    names = tuple(class_names or layout.class_names or features.DIGIT_CLASS_NAMES)
    if len(names) > features.NUM_CLASSES:
        raise DataError(f"{path}: {len(names)} class names; the model has {features.NUM_CLASSES} outputs")

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from google.protobuf import any_pb2, struct_pb2
    from tfx.components import FileBasedExampleGen
    from tfx.dsl.components.base import executor_spec
    from tfx.proto import example_gen_pb2

    from pipeline.components.image_example_gen_executor import Executor

    config = struct_pb2.Struct()
    config.update(layout_config(path, layout, names, eval_percent))
    packed = any_pb2.Any()
    packed.Pack(config)
    input_config = example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name=name, pattern=layout.splits[name]) for name in ("train", "eval")]
    )
    return FileBasedExampleGen(
        input_base=layout.root,
        input_config=input_config,
        custom_config=example_gen_pb2.CustomConfig(custom_config=packed),
        custom_executor_spec=executor_spec.BeamExecutorSpec(Executor),
    ).with_id(COMPONENT_ID)
