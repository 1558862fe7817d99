"""Any number of classes, from the data: 3 named classes and 26 letters, end to end.

The class count comes from the label folders (names, in sorted order); it reaches the model
head, the per-class metrics, the pushed model's dict.tsv, the server's answers and the report.
"""

from __future__ import annotations

import io
import json
import string
from pathlib import Path

import numpy as np
import pytest

from modules.hparams import HParams
from tests import datagen

pytestmark = pytest.mark.slow

SMALL = HParams(filters_1=8, filters_2=16, hidden_units_1=64, hidden_units_2=32, dropout=0.1,
                learning_rate=3e-3, epochs=12, batch_size=32, augment=False)


def _run(tmp_path: Path, data: Path, name: str, hparams: HParams = SMALL):  # noqa: ANN202
    from pipeline.config import PipelineConfig
    from pipeline.run import run_pipeline

    config = PipelineConfig(
        model_name=name, data=str(data), pipeline_root=str(tmp_path / "root"),
        metadata_path=str(tmp_path / "metadata.sqlite"), serving_dir=str(tmp_path / "serving"),
        log_dir=str(tmp_path / "logs"), hparams=hparams, accuracy_threshold=0.8,
    )
    out = io.StringIO()
    return run_pipeline(config, out=out), config


def _dictionary(pushed_path: str) -> list[str]:
    from contracts.dictionary import read_model_dictionary

    return read_model_dictionary(pushed_path)


def test_three_named_classes(tmp_path: Path) -> None:
    labels = [i % 3 for i in range(90)]
    pixels = datagen.synthetic_images(labels, seed=3)
    names = ["dog", "cat", "bird"]  # folder names; the classes are their sorted order
    data = datagen.write_named_folder(tmp_path / "pets",
                                      [(names[k], p) for k, p in zip(labels, pixels, strict=True)])
    summary, _ = _run(tmp_path, data, "pets")
    assert summary.blessed is True and summary.pushed_version == 1
    assert _dictionary(summary.pushed_path) == ["bird", "cat", "dog"]
    assert set(summary.per_label_accuracy) == {"0", "1", "2"}
    import tensorflow as tf

    model = tf.saved_model.load(summary.pushed_path)
    out = model.signatures["serving_default"](images=tf.zeros([2, 28, 28, 1]))
    assert next(iter(out.values())).shape == (2, 3)


def test_twenty_six_letters_bless_serve_and_report(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from registry.cli import cli as mlmodel
    from serving.cli import main as serving
    from tests.serving.test_cli import server_process

    letters = list(string.ascii_uppercase)
    data = datagen.write_named_folder(tmp_path / "letters", datagen.letter_images(letters, 14))
    # The data-derived budget (epochs, batch, augmentation unset) is what makes 26 small classes
    # learnable: 12 fixed epochs at batch 32 reached only 0.44 here.
    auto = HParams(**{**SMALL.to_dict(), "epochs": None, "batch_size": None, "augment": None})
    summary, config = _run(tmp_path, data, "letters", auto)
    assert summary.blessed is True, summary.accuracy
    assert _dictionary(summary.pushed_path) == letters
    assert len(summary.per_label_accuracy) == 26
    # A real server process, and `serving predict` on new letter images: names, not indices.
    fresh = datagen.write_named_folder(tmp_path / "new", datagen.letter_images(["Q", "Z"], 2, 9))
    with server_process(tmp_path / "server", Path(summary.pushed_path)) as (_, url):
        result = CliRunner().invoke(serving, ["predict", "mnist", str(fresh), "--url", url,
                                              "--output", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [p["tag"] for p in report["predictions"]] == ["Q", "Q", "Z", "Z"]
    assert all(len(p["prediction"]) == 26 for p in report["predictions"])
    assert {p["interpreted"] for p in report["predictions"]} <= set(letters)
    assert report["accuracy"] >= 0.5
    # The report names the classes.
    html = tmp_path / "report.html"
    result = CliRunner().invoke(mlmodel, ["report", "letters", "--out", str(html), "--metadata",
                                          config.metadata_path])
    assert result.exit_code == 0, result.output
    text = html.read_text()
    for index, letter in ((0, "A"), (12, "M"), (25, "Z")):  # the per-class table's rows
        assert f">{index} {letter}<" in text, letter
    assert np.isfinite(summary.accuracy)
