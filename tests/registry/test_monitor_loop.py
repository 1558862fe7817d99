"""The loop after the deploy, end to end on the tiny run: captured requests -> ``mlmodel
export-captured`` -> sorted by hand into class folders -> ``--data DIR --warm-start`` retrains
from the served model, and the Evaluator/Pusher treat the new model as usual."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from contracts.examples import DIGIT_CLASS_NAMES
from tests.conftest import TinyRun, run_tiny
from tests.datagen import synthetic_images
from tests.registry.capture_files import confident, write_capture

SERVING_NAME = "root_tiny"


def _sort_by_hand(out: Path, truth: dict[str, int]) -> int:
    """What the person does: move each unlabelled image into its class folder (here the true
    class, known from how the request was made), then delete unlabelled/."""
    moved = 0
    for image in sorted((out / "unlabelled").iterdir()):
        record = image.name.split("-")[4]  # v1-<stamp>-<pid>-<seq>-<record>-<image>-...
        label = truth[record]
        target = out / DIGIT_CLASS_NAMES[label]
        target.mkdir(exist_ok=True)
        image.rename(target / image.name)
        moved += 1
    (out / "unlabelled").rmdir()
    return moved


@pytest.mark.slow
def test_export_label_and_warm_start_retrain(tiny_pipeline_run: TinyRun, tmp_path: Path) -> None:
    from ml_metadata.metadata_store import metadata_store

    from metastore.store import parse_backend, prop
    from registry.api import open_registry
    from registry.export_captured import export_captured

    run = dataclasses.replace(tiny_pipeline_run, root=tmp_path,
                              metadata_path=str(tmp_path / "metadata.sqlite"),
                              serving_dir=str(tmp_path / "serving_model"),
                              pipeline_root=str(tmp_path / "pipeline_root"))
    shutil.copy(tiny_pipeline_run.metadata_path, run.metadata_path)
    reg = open_registry(run.metadata_path, run.serving_dir)
    reg.deploy("tiny", user="root")
    labels = np.array([c for c in range(10) for _ in range(8)])  # what users really drew
    probabilities = confident((labels + 1) % 10, confidence=0.55)  # a model that is wrong
    probabilities[::2] = confident((labels[::2] + 1) % 10, confidence=0.45)
    capture = tmp_path / "capture"
    write_capture(str(capture), SERVING_NAME, 1, synthetic_images(labels.tolist(), seed=21),
                  probabilities, class_names=DIGIT_CLASS_NAMES)
    out = tmp_path / "relabel"
    few = export_captured(reg, "tiny", str(out / "few"), capture_dir=str(capture),
                          low_confidence=0.5, limit=30)
    assert (few["captured"], few["selected"], few["written"]) == (80, 30, 30)
    assert all("-0.450.png" in n for n in os.listdir(out / "few" / "unlabelled"))
    result = export_captured(reg, "tiny", str(out), capture_dir=str(capture))
    again = export_captured(reg, "tiny", str(out), capture_dir=str(capture))
    assert result["written"] == again["written"] == 80
    assert len(os.listdir(out / "unlabelled")) == 80  # the same names: no duplicates
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # no staging left behind
    assert (out / "dict.tsv").read_text().splitlines()[1] == "0\tzero"
    shutil.rmtree(out / "few")
    assert _sort_by_hand(out, {str(i): int(label) for i, label in enumerate(labels)}) == 80

    run_tiny(run, data=str(out), warm_start=True)
    config = parse_backend(run.metadata_path).connection_config()
    models = metadata_store.MetadataStore(config).get_artifacts_by_type("Model")
    newest = max(models, key=lambda a: a.id)
    assert prop(newest, "warm_start_from"), "the retrained model did not start from the served one"
    assert int(prop(newest, "train_examples", 0)) + int(prop(newest, "eval_examples", 0)) == 80
