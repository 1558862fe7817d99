"""``mlmodel report``: a self-contained HTML report on a real tiny pipeline run."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest

from tests.conftest import TINY_HPARAMS, TinyRun, run_tiny

pytestmark = pytest.mark.slow

SECTIONS = ("data", "anomalies", "training", "per-class", "confusion", "misclassified",
            "comparison")
IMAGE_RE = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def _images(text: str) -> dict[str, tuple[int, int]]:
    """alt text -> (width, height) of every embedded image; each must be a real PNG."""
    from PIL import Image

    sizes = {}
    for alt, data in IMAGE_RE.findall(text):
        raw = base64.b64decode(data, validate=True)
        assert raw.startswith(b"\x89PNG\r\n\x1a\n"), alt
        with Image.open(io.BytesIO(raw)) as image:
            assert image.format == "PNG"
            image.load()  # decodes every pixel: a truncated or corrupt PNG raises here
            sizes[alt] = image.size
    return sizes


def _previous_blessed_model_id(run: TinyRun, model_id: int) -> int | None:
    """The newest blessed Model artifact id below ``model_id``, from TFX's ModelBlessings."""
    from ml_metadata.metadata_store import metadata_store

    from metastore.metadata_config import connection_config

    store = metadata_store.MetadataStore(connection_config(run.metadata_path))
    blessed = [b.custom_properties["current_model_id"].int_value
               for b in store.get_artifacts_by_type("ModelBlessing")
               if b.custom_properties["blessed"].int_value == 1]
    earlier = [i for i in blessed if i < model_id]
    return max(earlier) if earlier else None


def _cli(*args: str) -> int:
    from registry.cli import cli

    try:
        code = cli.main(args=list(args), prog_name="mlmodel", standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    return int(code or 0)


def test_report_has_every_section_and_real_images(tiny_pipeline_run: TinyRun,
                                                  tmp_path: Path) -> None:
    from registry.api import open_registry

    run = tiny_pipeline_run
    reg = open_registry(run.metadata_path, run.serving_dir)
    first = reg.summary(run.model_name).lineage
    # A second model (fewer epochs; the upstream components come from the cache), so the report
    # has a previous blessed model to compare with.
    summary, _ = run_tiny(run, hparams=TINY_HPARAMS.replace(epochs=4))
    second = reg.summary(run.model_name).lineage
    assert second["model_artifact_id"] != first["model_artifact_id"]

    out = tmp_path / "sub" / "report.html"
    out.parent.mkdir()
    code = _cli("--metadata", run.metadata_path, "--serving-dir", run.serving_dir,
                "report", run.model_name, "--out", str(out))
    assert code == 0
    text = out.read_text(encoding="utf-8")
    assert [p.name for p in out.parent.iterdir()] == ["report.html"], "temporary file left behind"
    for section in SECTIONS:
        assert f'<section id="{section}">' in text, section
    assert "http://" not in text and "https://" not in text, "the report must be self-contained"

    sizes = _images(text)
    for alt in ("examples per class", "training curves", "per-class accuracy", "confusion matrix"):
        assert alt in sizes, f"figure {alt!r} missing; found {sorted(sizes)}"
    for alt, (width, height) in sizes.items():
        assert 150 <= width <= 3000 and 100 <= height <= 3000, (alt, width, height)

    # Data: both splits' example counts from TFDV, and the ExampleValidator's verdict.
    data = text.split('<section id="data">')[1].split("</section>")[0]
    assert re.search(r"train: <b>\d+</b> examples", data) and "eval: <b>40</b> examples" in data
    assert "No anomalies" in text.split('<section id="anomalies">')[1].split("</section>")[0]
    # Per-class table: every class with its 4 eval examples.
    per_class = text.split('<section id="per-class">')[1].split("</section>")[0]
    assert "40 eval examples scored" in per_class
    assert per_class.count("<td>4</td>") >= 10
    # Comparison: the newest blessed model older than the reported one (other tests of the
    # session may have added models to this run, blessed or not).
    comparison = text.split('<section id="comparison">')[1].split("</section>")[0]
    previous = _previous_blessed_model_id(run, second["model_artifact_id"])
    if previous is not None:
        assert f"Previous blessed model: artifact {previous}" in comparison
        assert "sparse_categorical_accuracy" in comparison
    else:
        assert "no earlier blessed model" in comparison
    assert f"artifact</td><td>{second['model_artifact_id']}" in text


def test_report_errors_name_the_problem(tiny_pipeline_run: TinyRun, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = tiny_pipeline_run
    base = ["--metadata", run.metadata_path, "--serving-dir", run.serving_dir, "report"]
    assert _cli(*base, "no_such_model", "--out", str(tmp_path / "r.html")) == 2
    err = capsys.readouterr().err
    assert "no_such_model" in err and "mlmodel list" in err and len(err.splitlines()) == 1
    assert _cli(*base, run.model_name, "--out", str(tmp_path / "missing" / "r.html")) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "missing" in err
    assert not (tmp_path / "r.html").exists()


def test_misclassified_grid_and_confusion_figures_are_pngs() -> None:
    import numpy as np
    from PIL import Image

    from registry import report_render as render
    from registry.report_data import Predictions
    from tests.datagen import synthetic_images

    labels = np.arange(40) % 10
    wrong = (labels + (np.arange(40) % 3 == 0)) % 10  # every third image is called the next digit
    pred = Predictions(labels=labels, predicted=wrong, images=synthetic_images(labels))
    names = [str(i) for i in range(10)]
    grid = render.figure_misclassified(pred, names)
    assert grid is not None
    with Image.open(io.BytesIO(base64.b64decode(grid))) as image:
        image.load()
        assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200
    right = Predictions(labels=labels, predicted=labels, images=pred.images)
    assert render.figure_misclassified(right, names) is None
    matrix = render.confusion_matrix(pred, 10)
    assert int(matrix.sum()) == 40 and int(np.trace(matrix)) == 40 - 14
    with Image.open(io.BytesIO(base64.b64decode(render.figure_confusion(matrix, names)))) as image:
        image.load()
        assert image.format == "PNG"


def _three_class_data(tmp_path: Path):  # noqa: ANN202
    """A ReportData as ``gather_report`` makes it, for a model with 3 named classes."""
    import numpy as np

    from registry.report_data import Predictions, PreviousModel, ReportData
    from tests.datagen import synthetic_images

    labels = np.arange(30) % 3
    predicted = np.where(np.arange(30) % 5 == 0, (labels + 1) % 3, labels)
    per_label = {str(i): {"sparse_categorical_accuracy": 0.8 + i / 100} for i in range(3)}
    evaluation = {"overall": {"sparse_categorical_accuracy": 0.8}, "per_label": per_label}
    return ReportData(
        name="pets", model_id=7, model_uri=str(tmp_path / "model"), pipeline_run="run-1",
        blessed=True, pushed_dir=str(tmp_path / "serving" / "pets" / "1"), train_examples=90,
        eval_examples=30, train_seconds=1.5, hparams={"epochs": 2},
        class_names=["cat", "dog", "bird"], evaluation=evaluation, generated="now",
        curves={"train": {"loss": [(0, 1.0), (1, 0.5)]}}, curves_source="a test",
        predictions=Predictions(labels=labels, predicted=predicted,
                                images=synthetic_images(labels), num_outputs=3),
        previous=PreviousModel(3, "run-0", "", {"overall": {"sparse_categorical_accuracy": 0.7},
                                                "per_label": per_label}))


def test_report_renders_three_named_classes(tmp_path: Path) -> None:
    """The page shows the model's own class names and one row/column per class, not ten."""
    from registry.report_render import render_report

    text = render_report(_three_class_data(tmp_path))
    for section in SECTIONS:
        assert f'<section id="{section}">' in text, section
    per_class = text.split('<section id="per-class">')[1].split("</section>")[0]
    assert [f"<td>{i} {name}</td>" in per_class for i, name in enumerate(["cat", "dog", "bird"])] \
        == [True, True, True]
    assert "<td>3 " not in per_class and "30 eval examples scored" in per_class
    comparison = text.split('<section id="comparison">')[1].split("</section>")[0]
    assert "accuracy, label 2 (bird)" in comparison and "label 3" not in comparison
    sizes = _images(text)
    assert {"per-class accuracy", "confusion matrix", "misclassified images",
            "training curves"} <= set(sizes)


def test_report_class_names_fall_back_to_the_model(tmp_path: Path) -> None:
    """No class_names in MLMD: the SavedModel's dict.tsv, else one index per model output."""
    from contracts.dictionary import format_dictionary
    from contracts.signatures import DICTIONARY_RELPATH
    from registry.report_data import class_names_of

    data = _three_class_data(tmp_path)
    assert class_names_of(["a", "b"], str(tmp_path), None, {}) == ["a", "b"]
    assert class_names_of([], str(tmp_path), data.predictions, {}) == ["0", "1", "2"]
    assert class_names_of([], str(tmp_path), None, data.evaluation) == ["0", "1", "2"]
    dictionary = tmp_path / DICTIONARY_RELPATH
    dictionary.parent.mkdir(parents=True)
    dictionary.write_text(format_dictionary(["cat", "dog", "bird"]))
    assert class_names_of([], str(tmp_path), data.predictions, {}) == ["cat", "dog", "bird"]
