"""Editing user code changes the exec properties TFX caches on, so the affected components re-run."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.code_fingerprint import TRANSFORM_FILES, code_fingerprint


def test_fingerprint_follows_file_contents(tmp_path: Path) -> None:
    for name in (*TRANSFORM_FILES, "model.py"):
        (tmp_path / name).write_text(f"# {name}\n")
    whole, transform = code_fingerprint(root=tmp_path), code_fingerprint(TRANSFORM_FILES, tmp_path)
    (tmp_path / "model.py").write_text("# model.py, edited\n")
    assert code_fingerprint(root=tmp_path) != whole
    assert code_fingerprint(TRANSFORM_FILES, tmp_path) == transform  # Transform keeps its cache
    (tmp_path / "preprocessing.py").write_text("# scaled differently\n")
    assert code_fingerprint(TRANSFORM_FILES, tmp_path) != transform


def test_graph_carries_the_fingerprints(tmp_path: Path) -> None:
    from pipeline.config import PipelineConfig
    from pipeline.datasets import ResolvedData
    from pipeline.pipeline import create_pipeline
    from tests.datagen import write_png_folder

    config = PipelineConfig(pipeline_root=str(tmp_path / "root"),
                            metadata_path=str(tmp_path / "m.sqlite"),
                            serving_dir=str(tmp_path / "serving"))
    write_png_folder(tmp_path / "images", n_per_class=1)
    data = ResolvedData(path=str(tmp_path / "images"), description="test",
                        class_names=tuple(str(i) for i in range(10)))
    graph = create_pipeline(config, data)
    by_id = {component.id: component for component in graph.components}

    def code(component_id: str) -> str:
        value = by_id[component_id].exec_properties["custom_config"]
        return (json.loads(value) if isinstance(value, str) else value)["code"]

    assert code("Trainer") == code_fingerprint()
    assert code("Transform") == code_fingerprint(TRANSFORM_FILES)
