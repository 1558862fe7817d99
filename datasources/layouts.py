"""The input layouts ExampleGen accepts, in one table: how each is detected, listed and read.

``LAYOUTS`` lists, in detection order, one ``Layout`` per kind (IDX, IRIS TSV, TFRecord, image
folders). Each has

* ``detect(probe)``: a cheap look (directory listings, IDX headers; no TensorFlow) that returns an
  ``InputLayout`` when the folder holds this kind, else None;
* ``list_items(root, pattern, probe)``: the work items of one split (files, or image paths with
  their label), computed again where Beam runs;
* ``read(item, root, class_names, side, eval_percent)``: serialized tf.Examples of one item.

``detect_layout`` (used by the runners and by the executor, which re-validates at run time) and
the executor's Beam transform both go through this table, so adding a format means one entry
here and its reader in ``readers.py``. No TFX or TensorFlow is imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contracts import examples
from contracts.dictionary import default_class_names, parse_dictionary
from datasources import readers, storage
from datasources.errors import DataError

DICTIONARY_FILE = "dict.tsv"
IDX_BATCH = 4096  # examples serialized per numpy batch (IDX)


@dataclass(frozen=True)
class InputLayout:
    """What ``detect_layout`` found at a path."""

    kind: str  # one of LAYOUT_KINDS
    root: str  # absolute input directory (TFX's input_base)
    splits: dict[str, str]  # 'train'/'eval' -> glob pattern relative to root (same = hash split)
    class_names: tuple[str, ...] | None  # from a dict.tsv in the data, else None
    num_files: int
    num_examples: dict[str, int] = field(default_factory=dict)  # per split, when cheaply known
    # Class names the data imply when nothing names them: label folder names (sorted), or the
    # digits for index folders / IDX labels 0..N-1. None when only reading every file would tell.
    label_names: tuple[str, ...] | None = None

    @property
    def hash_split(self) -> bool:
        return self.splits["train"] == self.splits["eval"]

    def describe(self) -> str:
        how = "hash split" if self.hash_split else f"train={self.splits['train']} eval={self.splits['eval']}"
        counts = ", ".join(f"{k} {v}" for k, v in self.num_examples.items())
        return f"{self.kind} at {self.root} ({self.num_files} files; {how}{'; ' + counts if counts else ''})"


@dataclass(frozen=True)
class Probe:
    """A folder as detection sees it: its visible files and folders, and the known class names."""

    root: str  # local absolute path or URI (see storage.py)
    files: list[str]
    dirs: list[str]
    dictionary: tuple[str, ...] | None
    class_names: tuple[str, ...] | None  # --class-names, else dict.tsv, else None
    eval_percent: int


@dataclass(frozen=True)
class Layout:
    """One input format: its detection, its work items per split and its reader."""

    kind: str
    detect: Callable[[Probe], InputLayout | None]
    list_items: Callable[[str, str, Sequence[str], str | None, int], list[Any]]
    read: Callable[..., Iterator[bytes]]
    # When a split's size is only known after reading, so that Beam must count it to refuse an
    # empty split: "always", "hash_split" (only when one set of files is split by hash) or "never"
    # (the listed items are the examples).
    count_examples: str = "always"

    def must_count(self, hash_split: bool) -> bool:
        return self.count_examples == "always" or (self.count_examples == "hash_split" and hash_split)


# --------------------------------------------------------------------------------------------
# Class names from the data


def names_for_indices(count: int) -> tuple[str, ...]:
    """Default names of classes 0..count-1 (contracts.dictionary.default_class_names)."""
    return tuple(default_class_names(count))


def names_from_folders(folders: Sequence[str], where: str) -> tuple[str, ...]:
    """The classes that label folders name: indices 0..max, or folder names in sorted order."""
    unique = sorted(set(folders))
    numeric = [f for f in unique if f.isdigit()]
    if numeric and len(numeric) != len(unique):
        named = [f for f in unique if not f.isdigit()]
        raise DataError(
            f"{where}: label folders mix class indices ({', '.join(numeric[:5])}) and names "
            f"({', '.join(named[:5])}); use one or the other, or pass --class-names"
        )
    if numeric:
        indices = {int(f) for f in numeric}
        missing = sorted(set(range(max(indices) + 1)) - indices)
        if missing:
            raise DataError(
                f"{where}: label folders are class indices 0..{max(indices)} but skip "
                f"{', '.join(map(str, missing[:10]))}; every class needs a folder of images "
                "(rename or remove the extra folders, or pass --class-names)"
            )
        names = names_for_indices(max(indices) + 1)
    else:
        names = tuple(unique)
    try:
        examples.check_class_count(len(names), f"{where} (label folders {', '.join(unique[:5])})")
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    return names


def _label_folders(base: str) -> list[str]:
    return [e.name for e in readers.list_dir(base) if e.is_dir()]


# --------------------------------------------------------------------------------------------
# Image folders


def _split_folders(dirs: list[str]) -> tuple[str | None, str | None]:
    lowered = {d.lower(): d for d in dirs}
    train = next((lowered[n] for n in readers.TRAIN_SPLIT_NAMES if n in lowered), None)
    evals = next((lowered[n] for n in readers.EVAL_SPLIT_NAMES if n in lowered), None)
    return train, evals


def _hash_counts(keys: list[str], eval_percent: int, where: str) -> dict[str, int]:
    evals = sum(1 for k in keys if readers.in_split(k, "eval", eval_percent))
    counts = {"train": len(keys) - evals, "eval": evals}
    empty = [k for k, v in counts.items() if v == 0]
    if empty:
        raise DataError(
            f"{where}: the {empty[0]} split would be empty ({len(keys)} images, eval_percent "
            f"{eval_percent}); add images or use training/ and testing/ folders"
        )
    return counts


def _detect_images(probe: Probe) -> InputLayout | None:
    root, dirs = probe.root, probe.dirs
    if not dirs:
        return None
    split_dirs = [d for d in dirs if d.lower() in readers.SPLIT_FOLDER_NAMES]
    stray = sorted(set(dirs) - set(split_dirs))
    if split_dirs and stray:
        raise DataError(
            f"{root}: holds split folders ({', '.join(split_dirs)}) and other folders "
            f"({', '.join(stray)}); use either <split>/<label>/ or <label>/ folders, not both"
        )
    label_parents = [storage.join(root, d) for d in split_dirs] if split_dirs else [root]
    implied = None if probe.class_names else names_from_folders(
        [f for p in label_parents for f in _label_folders(p)], root)
    names = probe.class_names or implied or ()
    if not split_dirs:
        files = readers.list_image_files(root, None, names)
        if not files:
            raise _empty(root, "the label folders hold no images")
        counts = _hash_counts([rel for rel, _ in files], probe.eval_percent, root)
        return InputLayout("image_folder", str(root), {"train": "*/*", "eval": "*/*"},
                           probe.dictionary, len(files), counts, implied)
    train, evals = _split_folders(split_dirs)
    if train is None or evals is None:
        only = train or evals
        assert only is not None
        files = readers.list_image_files(root, only, names)
        if not files:
            raise _empty(storage.join(root, only), "the label folders hold no images")
        pattern = f"{only}/*/*"
        counts = _hash_counts([rel for rel, _ in files], probe.eval_percent,
                              storage.join(root, only))
        return InputLayout("image_folder_split", str(root), {"train": pattern, "eval": pattern},
                           probe.dictionary, len(files), counts, implied)
    counts = {}
    for split, folder in (("train", train), ("eval", evals)):
        files = readers.list_image_files(root, folder, names)
        if not files:
            raise _empty(storage.join(root, folder), f"the {split} split folder holds no images")
        counts[split] = len(files)
    return InputLayout("image_folder_split", str(root),
                       {"train": f"{train}/*/*", "eval": f"{evals}/*/*"},
                       probe.dictionary, sum(counts.values()), counts, implied)


ImageItem = tuple[str, int]  # (path relative to the root, label)


def _list_images(root: str, pattern: str, class_names: Sequence[str], side: str | None,
                 eval_percent: int) -> list[ImageItem] | list[list[ImageItem]]:
    """One work item per local image; remote images in chunks, read concurrently (one request
    per object would otherwise be paid one after the other)."""
    split_dir = pattern[: -len("*/*")].rstrip("/") or None
    files = readers.list_image_files(root, split_dir, class_names)
    if side is not None:
        files = [(rel, label) for rel, label in files if readers.in_split(rel, side, eval_percent)]
    if storage.is_remote(root):
        size = storage.REMOTE_CHUNK
        return [files[start:start + size] for start in range(0, len(files), size)]
    return files


def _read_image(item: ImageItem | list[ImageItem], root: str, class_names: Sequence[str],
                side: str | None, eval_percent: int) -> Iterator[bytes]:
    del class_names, side, eval_percent  # the label was checked and the split chosen when listed
    items = item if isinstance(item, list) else [item]
    paths = [storage.join(root, rel) for rel, _ in items]
    for path, (_, label), data in zip(paths, items, storage.read_many(paths), strict=True):
        yield readers.to_tf_example(readers.decode_image(data, path), label)


# --------------------------------------------------------------------------------------------
# MNIST IDX


def _detect_idx(probe: Probe) -> InputLayout | None:
    root = probe.root
    pairs = readers.find_idx_pairs(probe.files)
    if not pairs:
        return None
    counts: dict[str, int] = {}
    top_label = 0
    for prefix, pair in pairs.items():
        if set(pair) != {"images", "labels"}:
            have = next(iter(pair.values()))
            missing = "labels" if "images" in pair else "images"
            raise DataError(
                f"{storage.join(root, have)}: has no matching {missing} file "
                f"({prefix}-{missing}-idx{'1' if missing == 'labels' else '3'}-ubyte[.gz]); add it"
            )
        images, _ = readers.check_idx_pair(storage.join(root, pair["images"]),
                                           storage.join(root, pair["labels"]))
        counts[prefix] = images.count
        top_label = max(top_label, readers.max_idx_label(storage.join(root, pair["labels"])))
    train = next((p for p in pairs if p.lower() in readers.TRAIN_SPLIT_NAMES), None)
    evals = next((p for p in pairs if p.lower() in ("t10k",) + readers.EVAL_SPLIT_NAMES), None)
    if train and evals:
        splits = {"train": f"{train}-*", "eval": f"{evals}-*"}
        num = {"train": counts[train], "eval": counts[evals]}
    else:
        only = train or evals or sorted(pairs)[0]
        splits = {"train": f"{only}-*", "eval": f"{only}-*"}
        num = {"all": counts[only]}
    implied = names_for_indices(max(top_label + 1, examples.MIN_CLASSES))
    return InputLayout("idx", str(root), splits, probe.dictionary, 2 * len(pairs), num, implied)


def _files(root: str, pattern: str) -> list[str]:
    return storage.glob_files(root, pattern)


def _list_idx(root: str, pattern: str, class_names: Sequence[str], side: str | None,
              eval_percent: int) -> list[tuple[str, str]]:
    files = _files(root, pattern)
    folder = storage.dirname(files[0]) if files else root  # the pattern may name a subfolder
    pairs = readers.find_idx_pairs(storage.basename(p) for p in files)
    return [(storage.join(folder, p["images"]), storage.join(folder, p["labels"]))
            for p in pairs.values()]


def _read_idx(pair: tuple[str, str], root: str, class_names: Sequence[str], side: str | None,
              eval_percent: int) -> Iterator[bytes]:
    images, labels = readers.read_idx_pair(pair[0], pair[1], len(class_names))
    if side is not None:
        name = storage.basename(pair[0])
        keep = np.fromiter(
            (readers.in_split(f"{name}#{i}", side, eval_percent) for i in range(len(labels))),
            dtype=bool, count=len(labels),
        )
        images, labels = images[keep], labels[keep]
    for start in range(0, len(labels), IDX_BATCH):
        yield from readers.to_tf_examples(images[start:start + IDX_BATCH],
                                          labels[start:start + IDX_BATCH])


# --------------------------------------------------------------------------------------------
# IRIS TSV


def _detect_tsv(probe: Probe) -> InputLayout | None:
    root = probe.root
    tsvs = [n for n in probe.files if n.lower().endswith(".tsv") and n != DICTIONARY_FILE]
    if not tsvs:
        return None
    lowered = {n.lower(): n for n in tsvs}
    train = lowered.get("train.tsv")
    evals = next((lowered[f"{n}.tsv"] for n in readers.EVAL_SPLIT_NAMES if f"{n}.tsv" in lowered), None)
    for name in tsvs:
        if storage.size(storage.join(root, name)) == 0:
            raise DataError(f"{storage.join(root, name)}: empty TSV file; re-create it or remove it")
    if train and evals:
        splits = {"train": train, "eval": evals}
    else:  # img2tsv output before splitter (0.tsv ... 9.tsv): hash split of the rows
        splits = {"train": "*.tsv", "eval": "*.tsv"}
    return InputLayout("iris_tsv", str(root), splits, probe.dictionary, len(tsvs))


def _list_tsv(root: str, pattern: str, class_names: Sequence[str], side: str | None,
              eval_percent: int) -> list[str]:
    return [p for p in _files(root, pattern) if storage.basename(p) != DICTIONARY_FILE]


def _read_tsv(path: str, root: str, class_names: Sequence[str], side: str | None,
              eval_percent: int) -> Iterator[bytes]:
    for _, pixels, label in readers.iter_iris_tsv(path, len(class_names), split=side,
                                                  eval_percent=eval_percent):
        yield readers.to_tf_example(pixels, label)


# --------------------------------------------------------------------------------------------
# TFRecord


def _detect_tfrecord(probe: Probe) -> InputLayout | None:
    root = probe.root
    records = [n for n in probe.files if readers.is_tfrecord_name(n)]
    if records:
        return InputLayout("tfrecord", str(root), {"train": "*tfrecord*", "eval": "*tfrecord*"},
                           probe.dictionary, len(records))
    # Split folders of TFRecords: train/ + eval/, or TFX's own Split-train/ + Split-eval/.
    plain = {d.removeprefix("Split-").lower(): d for d in probe.dirs}
    train, evals = _split_folders(list(plain))
    if not (train and evals):
        return None
    counts = {}
    for split in (train, evals):
        folder = storage.join(root, plain[split])
        counts[split] = sum(1 for e in readers.list_dir(folder)
                            if e.is_file() and readers.is_tfrecord_name(e.name))
    if not all(counts.values()):
        return None
    splits = {"train": f"{plain[train]}/*tfrecord*", "eval": f"{plain[evals]}/*tfrecord*"}
    return InputLayout("tfrecord", str(root), splits, probe.dictionary, sum(counts.values()))


def _list_tfrecord(root: str, pattern: str, class_names: Sequence[str], side: str | None,
                   eval_percent: int) -> list[str]:
    return _files(root, pattern)


def _read_tfrecord(path: str, root: str, class_names: Sequence[str], side: str | None,
                   eval_percent: int) -> Iterator[bytes]:
    for _, pixels, label in readers.iter_tfrecord(path, len(class_names), split=side,
                                                  eval_percent=eval_percent):
        yield readers.to_tf_example(pixels, label)


# --------------------------------------------------------------------------------------------
# The table


LAYOUTS: tuple[Layout, ...] = (  # detection order: the first that recognises a folder wins
    Layout("idx", _detect_idx, _list_idx, _read_idx, count_examples="hash_split"),
    Layout("iris_tsv", _detect_tsv, _list_tsv, _read_tsv),
    Layout("tfrecord", _detect_tfrecord, _list_tfrecord, _read_tfrecord),
    Layout("image_folder", _detect_images, _list_images, _read_image, count_examples="never"),
)
_ALIASES = {"image_folder_split": "image_folder"}  # one reader for both image folder shapes
LAYOUT_KINDS = ("image_folder_split", "image_folder", "idx", "tfrecord", "iris_tsv")


def layout_of(kind: str) -> Layout:
    """The table entry for an ``InputLayout.kind``."""
    wanted = _ALIASES.get(kind, kind)
    for layout in LAYOUTS:
        if layout.kind == wanted:
            return layout
    raise ValueError(f"unknown input layout kind {kind!r}; known: {', '.join(LAYOUT_KINDS)}")


# --------------------------------------------------------------------------------------------
# Detection


def _read_dictionary(root: str) -> tuple[str, ...] | None:
    path = storage.join(root, DICTIONARY_FILE)
    if not storage.isfile(path):
        return None
    try:
        return tuple(parse_dictionary(storage.read_bytes(path).decode("utf-8")))
    except ValueError as exc:
        raise DataError(f"{path}: {exc}; fix it (header 'label<TAB>tag', then one row per class)") from exc


def _empty(path: str, what: str) -> DataError:
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
    storage.forget()  # a remote store may have changed since the last look
    root = storage.normalize(path)
    if not storage.exists(root):
        if storage.is_remote(root):
            raise _empty(root, "nothing is stored under this prefix")
        raise DataError(f"{path}: no such file or directory; check --data")
    if storage.isfile(root):
        return _single_file_layout(root, class_names, eval_percent)
    entries = readers.list_dir(root)
    if not entries:
        raise _empty(root, "the input folder is empty")
    dictionary = _read_dictionary(root)
    probe = Probe(root=root, files=[e.name for e in entries if e.is_file()],
                  dirs=[e.name for e in entries if e.is_dir()], dictionary=dictionary,
                  class_names=tuple(class_names or dictionary or ()) or None,
                  eval_percent=eval_percent)
    for layout in LAYOUTS:
        found = layout.detect(probe)
        if found is not None:
            return found
    raise _empty(root, f"no supported input layout found (files: {', '.join(probe.files[:10])})")


def _single_file_layout(path: str, class_names: Sequence[str] | None,
                        eval_percent: int) -> InputLayout:
    """One TFRecord or TSV file (hash-split), or one file of an IDX pair (its folder is read)."""
    name, parent = storage.basename(path), storage.dirname(path)
    if readers.idx_prefix(name):
        return detect_layout(parent, class_names=class_names, eval_percent=eval_percent)
    dictionary = _read_dictionary(parent)
    if name.lower().endswith(".tsv") and name != DICTIONARY_FILE:
        if storage.size(path) == 0:
            raise DataError(f"{path}: empty TSV file; re-create it or remove it")
        return InputLayout("iris_tsv", str(parent), {"train": name, "eval": name}, dictionary, 1)
    if readers.is_tfrecord_name(name):
        return InputLayout("tfrecord", str(parent), {"train": name, "eval": name}, dictionary, 1)
    raise DataError(
        f"{path}: a single file must be a TFRecord (name containing 'tfrecord'), an IRIS .tsv or "
        "an MNIST IDX file; for images, point --data at their folder"
    )
