"""``--deploy`` is wired at the runner's edge: the runners hand ``run_pipeline`` a callback that
deploys through the registry; the pipeline core imports no registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.registry.conftest import Env


def test_a_deploy_without_a_callback_is_refused_before_anything_runs(tmp_path: Path) -> None:
    from pipeline.config import PipelineConfig
    from pipeline.run import run_pipeline

    config = PipelineConfig(data_root=str(tmp_path / "no-data"), deploy_label="stable")
    with pytest.raises(ValueError, match="deploy callback"):
        run_pipeline(config)
    assert not (tmp_path / "no-data").exists()


def test_the_runners_pass_the_registry_deploy(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.run
    from pipeline import runner_cli

    seen: dict[str, Any] = {}

    class Stop(Exception):
        pass

    def fake_run(config: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(pipeline.run, "run_pipeline", fake_run)
    with pytest.raises(Stop):
        runner_cli.run_from_options({}, "local")
    assert seen["deploy"] is runner_cli.registry_deploy


def test_registry_deploy_deploys_the_models_blessed_push(sqlite_env: Env) -> None:
    from pipeline.config import PipelineConfig
    from pipeline.runner_cli import registry_deploy

    env = sqlite_env
    env.add_run("mnist")
    config = PipelineConfig(metadata_path=env.metadata, serving_dir=env.serving_dir,
                            model_name="mnist", deploy_label="stable", deploy_user="ann")
    result = registry_deploy(config)
    assert (result.serving_name, result.latest_version) == ("ann_mnist", 1)
    assert env.registry().versions("mnist")[0].labels == ("stable",)
