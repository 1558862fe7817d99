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


def test_fingerprint_follows_the_contracts_the_code_imports(tmp_path: Path) -> None:
    modules, contracts = tmp_path / "modules", tmp_path / "contracts"
    modules.mkdir()
    contracts.mkdir()
    (modules / "features.py").write_text("from contracts.examples import IMAGE_KEY\n")
    (modules / "preprocessing.py").write_text("from modules import features\n")
    (modules / "__init__.py").write_text("")
    (modules / "trainer.py").write_text("from contracts import signatures\n")
    (contracts / "__init__.py").write_text("")
    (contracts / "examples.py").write_text("IMAGE_KEY = 'image'\n")
    (contracts / "signatures.py").write_text("from contracts.versions import next_version\n")
    (contracts / "versions.py").write_text("def next_version(): ...\n")
    (contracts / "settings.py").write_text("URL = 'x'\n")  # imported by nothing here
    whole, transform = code_fingerprint(root=modules), code_fingerprint(TRANSFORM_FILES, modules)
    (contracts / "settings.py").write_text("URL = 'y'\n")
    assert (code_fingerprint(root=modules), code_fingerprint(TRANSFORM_FILES, modules)) == (
        whole, transform)
    (contracts / "versions.py").write_text("def next_version(): return 1\n")  # through signatures
    assert code_fingerprint(root=modules) != whole
    assert code_fingerprint(TRANSFORM_FILES, modules) == transform
    (contracts / "examples.py").write_text("IMAGE_KEY = 'pixels'\n")
    assert code_fingerprint(TRANSFORM_FILES, modules) != transform


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
