"""A model from a real tiny pipeline run shows up in the registry and deploys."""

from __future__ import annotations

import os

import pytest

from tests.conftest import TinyRun

pytestmark = pytest.mark.slow


def test_real_pipeline_model_in_registry(tiny_pipeline_run: TinyRun, tmp_path) -> None:
    import shutil

    from registry.api import open_registry

    tiny = tiny_pipeline_run
    # A copy: deploying into the session's run would leave records whose files live in this
    # test's tmp dir, and other tests (the README journey's `mlmodel doctor`) read that run.
    metadata = str(tmp_path / "metadata.sqlite")
    shutil.copy(tiny.metadata_path, metadata)
    reg = open_registry(metadata, str(tmp_path / "serving"))
    names = [row.name for row in reg.list_models()]
    assert tiny.model_name in names
    summary = reg.summary(tiny.model_name)
    assert summary.source == "pipeline" and summary.state == "DONE"
    assert summary.parameter, "the Trainer's hparams custom property should be read"
    assert summary.train_cnt and summary.train_cnt > 0
    assert summary.elapsed and summary.elapsed > 0
    assert len(summary.class_names) == 10
    assert summary.lineage["pipeline_run"] and summary.lineage["trainer_execution_id"]
    assert "overall" in summary.evaluation
    # a failure, never a skip: the tiny run is made to bless and push (accuracy_threshold 0.5)
    assert summary.lineage.get("pushed_destination"), (
        f"the session's tiny pipeline run pushed nothing (blessed: {summary.lineage['blessed']}, "
        f"infra_blessed: {summary.lineage['infra_blessed']}); its run output:\n"
        f"{tiny.output[-3000:]}")
    result = reg.deploy(tiny.model_name, label="stable", user="ci")
    assert result.latest_version == 1 and result.serving_name == f"ci_{tiny.model_name}"
    deployed = os.path.join(str(tmp_path / "serving"), result.serving_name, "1")
    assert os.path.isfile(os.path.join(deployed, "saved_model.pb"))
    [version] = reg.serving_snapshot()
    assert version.serving and version.current and version.labels == ("stable",)
