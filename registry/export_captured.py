"""``mlmodel export-captured``: captured request images as PNG files, for labelling and retraining.

Images go to ``OUT/unlabelled/`` (the least confident first when ``limit`` cuts), named
``v<version>-<capture file>-<record>-<image>-<predicted class>-<confidence>.png`` so a person
sorting them sees what the model answered; the same capture always gets the same name, so
exporting twice does not duplicate. A person moves each file into ``OUT/<class>/`` (a class name
or index, as the pipeline's image-folder layout reads) and deletes ``unlabelled/``; then
``python -m pipeline.local_runner --data OUT --warm-start`` retrains from the served model.
``OUT/dict.tsv`` (the model's class names) keeps the classes in the model's order, whether the
folders are named by class name or by index.

Atomic: the PNGs are written into a hidden staging folder inside OUT, which becomes
``OUT/unlabelled`` by one rename (or, when that folder exists, each file is renamed into it), so
a reader never sees a half-written image and an interrupted export leaves only the hidden folder.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

import numpy as np

from contracts import settings
from metastore.errors import InputError
from registry import monitor_capture, monitor_lineage

UNLABELLED = "unlabelled"
DICTIONARY_FILE = "dict.tsv"  # what the pipeline's layouts read at the data root
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def _file_name(version: int, source: str, predicted: str, confidence: float) -> str:
    """A stable, file-system-safe name for one captured image."""
    stem, _, where = source.partition("#")
    record, _, image = where.partition(":")
    stem = stem.removeprefix("capture-").removesuffix(".tfrecord")
    label = _UNSAFE.sub("_", predicted) or "class"
    return f"v{version}-{stem}-{record}-{image or 0}-{label}-{confidence:.3f}.png"


def _write_png(path: str, pixels: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode="L").save(path, format="PNG")


def _write_dictionary(out: str, class_names: list[str]) -> None:
    from contracts.dictionary import format_dictionary

    path = os.path.join(out, DICTIONARY_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(format_dictionary(class_names))
    os.replace(tmp, path)


def export_captured(reg: Any, name: str, out_dir: str, version: int | None = None,
                    label: str | None = None, since: str | None = "24h",
                    capture_dir: str | None = None, low_confidence: float | None = None,
                    limit: int | None = None) -> dict[str, Any]:
    """Write the selected captured images; what was written (counts and the folder)."""
    from contracts.dictionary import read_model_dictionary

    target = monitor_lineage.pick_version(reg, name, version, label)
    class_names = read_model_dictionary(target.path)
    since_s = monitor_capture.parse_since(since)
    root = os.path.abspath(capture_dir or settings.default_capture_dir())
    files = monitor_capture.capture_files(root, target.serving_name, [target.version], since_s)
    captured = monitor_capture.read_captured(files, class_names, since_s)
    if not len(captured):
        raise InputError(f"no captured requests for version {target.version} of {name!r} under "
                         f"{root}; nothing to export (widen --since, or check --capture-dir)")
    predicted = np.argmax(captured.probabilities, axis=1)
    confidence = captured.probabilities[np.arange(len(predicted)), predicted]
    chosen = np.argsort(confidence, kind="stable")
    if low_confidence is not None:
        chosen = chosen[confidence[chosen] < low_confidence]
    if limit is not None:
        chosen = chosen[:limit]
    out = os.path.abspath(out_dir)
    os.makedirs(out, exist_ok=True)
    final = os.path.join(out, UNLABELLED)
    staging = os.path.join(out, f".{UNLABELLED}.tmp-{os.getpid()}")
    os.makedirs(staging, exist_ok=True)
    try:
        names = []
        for i in chosen.tolist():
            file_name = _file_name(target.version, captured.sources[i],
                                   class_names[predicted[i]], float(confidence[i]))
            _write_png(os.path.join(staging, file_name), captured.pixels[i])
            names.append(file_name)
        if not os.path.isdir(final):
            os.rename(staging, final)
        else:
            for file_name in names:
                os.replace(os.path.join(staging, file_name), os.path.join(final, file_name))
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
    _write_dictionary(out, class_names)
    return {"model": name, "version": target.version, "out": out, "folder": final,
            "captured": len(captured), "selected": int(len(chosen)), "written": len(names),
            "class_names": list(class_names)}
