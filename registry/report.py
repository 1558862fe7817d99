"""``mlmodel report NAME``: one self-contained HTML page about a pipeline model's newest run.

Sections: data statistics and schema anomalies (TFDV's StatisticsGen/ExampleValidator outputs),
training curves (the Trainer's TensorBoard logs), per-class accuracy and a confusion matrix (the
model's ``serving_examples`` signature over the eval split), a grid of misclassified eval images,
and the comparison with the previous blessed model (ModelEvaluation metrics from MLMD).

Two steps: ``registry.report_data.gather_report`` (MLMD and TensorFlow) makes a ``ReportData``;
``registry.report_render.render_report`` (matplotlib and HTML) draws the page from it. Both are
imported lazily, so the other ``mlmodel`` commands stay free of TensorFlow and matplotlib. The
file is written to a temporary name and renamed.
"""

from __future__ import annotations

import os
import tempfile

from contracts.runtime import configure_tensorflow
from metastore.errors import InputError


def build_report(metadata: str | None, serving_dir: str | None, name: str) -> str:
    """The report's HTML for pipeline model ``name`` (its newest trained model)."""
    configure_tensorflow()  # Keras 2 and quiet logs, before the SavedModel is loaded
    from registry.api import open_registry
    from registry.report_data import gather_report
    from registry.report_render import render_report

    return render_report(gather_report(open_registry(metadata, serving_dir), name))


def write_report(metadata: str | None, serving_dir: str | None, name: str, out: str) -> str:
    """Build the report and write it to ``out`` atomically; returns the absolute path."""
    target = os.path.abspath(out)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise InputError(f"--out {out}: folder {folder} does not exist; create it or pick another")
    text = build_report(metadata, serving_dir, name)
    handle, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp",
                                   dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target
