"""``dict.tsv``: the class names that travel with a model (IRIS splitter's format).

A two-column TSV with a header ``label<TAB>tag``, then ``<index><TAB><name>`` for indices
``0..N-1``. IRIS's one-hot labels (``0,1,0,...``) are accepted as indices when read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from contracts.examples import DIGIT_CLASS_NAMES
from contracts.signatures import DICTIONARY_RELPATH


def format_dictionary(class_names: Sequence[str]) -> str:
    """The dict.tsv text for ``class_names`` (index i -> name i)."""
    lines = ["label\ttag"] + [f"{i}\t{name}" for i, name in enumerate(class_names)]
    return "\n".join(lines) + "\n"


def parse_dictionary(text: str) -> list[str]:
    """Class names from dict.tsv text; accepts IRIS one-hot labels ("0,1,0,...") too."""
    names: dict[int, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or (lineno == 1 and line.lower().startswith("label")):
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise ValueError(f"dict.tsv line {lineno}: expected 'label<TAB>tag', got {raw!r}")
        key, tag = parts[0].strip(), parts[1].strip()
        if "," in key:
            onehot = [int(float(v)) for v in key.strip("[]").split(",")]
            if sorted(onehot) != [0] * (len(onehot) - 1) + [1]:
                raise ValueError(f"dict.tsv line {lineno}: {key!r} is not a one-hot label")
            index = onehot.index(1)
        else:
            index = int(key)
        names[index] = tag
    if not names:
        raise ValueError("dict.tsv holds no classes")
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"dict.tsv class indices must be 0..N-1, got {sorted(names)}")
    return [names[i] for i in range(len(names))]


def default_class_names(count: int) -> list[str]:
    """The one rule for classes without names (no dict.tsv, no --class-names): the digits' names
    up to ten classes, else the class indices. The pipeline, the server and the clients use it."""
    if count <= len(DIGIT_CLASS_NAMES):
        return list(DIGIT_CLASS_NAMES[:count])
    return [str(i) for i in range(count)]


def read_model_dictionary(saved_model_dir: str) -> list[str]:
    """The class names stored with a local SavedModel; the ten digits when it has none."""
    path = os.path.join(saved_model_dir, DICTIONARY_RELPATH)
    if not os.path.isfile(path):
        return list(DIGIT_CLASS_NAMES)
    with open(path, encoding="utf-8") as handle:
        return parse_dictionary(handle.read())
