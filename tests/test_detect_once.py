"""A run detects its input's layout once before Beam (the executor checks it again at run time):
``prepare_data`` finds it, and the graph's ExampleGen takes it from there."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.components import image_example_gen
from tests.datagen import write_png_folder


@pytest.fixture
def detections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    calls: list[tuple[str, int]] = []
    real = image_example_gen.detect_layout

    def counting(path: str, **kwargs: object):  # noqa: ANN202
        calls.append((path, int(kwargs.get("eval_percent", 20))))  # type: ignore[arg-type]
        return real(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(image_example_gen, "detect_layout", counting)
    return calls


def _config(tmp_path: Path, **changes: object):  # noqa: ANN202
    from pipeline.config import PipelineConfig

    data = write_png_folder(tmp_path / "data", n_per_class=6, classes=(0, 1))
    return PipelineConfig(model_name="once", data=str(data), pipeline_root=str(tmp_path / "root"),
                          metadata_path=str(tmp_path / "m.sqlite"),
                          serving_dir=str(tmp_path / "serving"), log_dir=str(tmp_path / "logs"),
                          **changes)


def test_a_run_detects_the_layout_once_before_beam(tmp_path: Path, detections) -> None:
    from pipeline.pipeline import create_pipeline
    from pipeline.run import prepare_data

    config = _config(tmp_path, eval_percent=30)
    data = prepare_data(config)
    assert data.layout is not None and data.layout.kind
    pipeline = create_pipeline(config, data)
    assert len(detections) == 1 and detections[0][1] == 30, detections
    [example_gen] = [c for c in pipeline.components if c.id == image_example_gen.COMPONENT_ID]
    assert example_gen.exec_properties["input_base"] == data.layout.root


def test_a_layout_checked_for_another_split_is_detected_again(tmp_path: Path, detections) -> None:
    from pipeline.datasets import resolve_data
    from pipeline.pipeline import create_pipeline

    config = _config(tmp_path, eval_percent=40)
    data = resolve_data(config.data, None)  # checked for the default 20 % eval split
    assert data.layout_for(20) is data.layout and data.layout_for(40) is None
    create_pipeline(config, data)
    assert [percent for _, percent in detections] == [20, 40]
