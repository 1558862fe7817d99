"""A model with 3 named classes: the server, ``serving predict`` and the OpenAPI document.

Nothing in the serving path may assume ten classes or read them from ``modules/``: the class
names come from the model's dict.tsv, the class count from its output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from click.testing import CliRunner
from PIL import Image

from contracts.dictionary import default_class_names
from contracts.examples import DIGIT_CLASS_NAMES, IMAGE_PIXELS
from serving.cli import main
from serving.openapi import openapi_document

from .conftest import FakeSource, Server, start_server

NAMES = ["cat", "dog", "bird"]  # index order: cat=0, dog=1, bird=2


@pytest.fixture(scope="module")
def three_class_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real SavedModel with a 3-way head and dict.tsv naming cat, dog, bird."""
    from modules.hparams import HParams
    from modules.model import build_model
    from modules.signatures import export_serving_model

    path = tmp_path_factory.mktemp("three") / "saved"
    hp = HParams(filters_1=4, filters_2=8, hidden_units_1=16, hidden_units_2=16, epochs=1,
                 augment=False)
    export_serving_model(build_model(hp, num_classes=3), str(path), None, NAMES)
    return path


@pytest.fixture(scope="module")
def pets(tmp_path_factory: pytest.TempPathFactory, three_class_model: Path) -> Iterator[Server]:
    source = FakeSource(tmp_path_factory.mktemp("pets") / "serving_model", three_class_model)
    source.deploy("pets", 1)
    srv = start_server(source)
    yield srv
    srv.http.stop()
    srv.runtime.close()


def _png_folders(root: Path, folders: list[str], per_folder: int = 2) -> Path:
    rng = np.random.default_rng(3)
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(per_folder):
            pixels = rng.integers(0, 255, (28, 28), dtype=np.uint8)
            Image.fromarray(pixels).save(root / folder / f"{i}.png")
    return root


def test_classify_names_the_three_classes(pets: Server) -> None:
    body = {"examples": [{"image": [0] * IMAGE_PIXELS}]}
    response = requests.post(f"{pets.url}/v1/models/pets:classify", json=body, timeout=30)
    assert response.status_code == 200, response.text
    assert [name for name, _ in response.json()["results"][0]] == NAMES


def test_predict_shows_the_models_own_class_names(pets: Server, tmp_path: Path) -> None:
    # Label folders may be class names or class indices; "other" names no class.
    folder = _png_folders(tmp_path / "inputs", ["dog", "2", "other"])
    result = CliRunner().invoke(main, ["predict", "pets", str(folder), "--url", pets.url,
                                       "--output", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    rows = report["predictions"]
    assert len(rows) == 6
    assert all(len(r["prediction"]) == 3 for r in rows)
    assert {r["interpreted"] for r in rows} <= set(NAMES)
    assert all(r["interpreted"] == NAMES[r["predicted"]] for r in rows)
    by_folder = {Path(r["input"]).parent.name: (r["label"], r["tag"]) for r in rows}
    assert by_folder == {"2": (2, "bird"), "dog": (1, "dog"), "other": (None, None)}
    assert report["labelled"] == 4


def test_predict_table_prints_class_names(pets: Server, tmp_path: Path) -> None:
    folder = _png_folders(tmp_path / "inputs", ["cat"], per_folder=1)
    result = CliRunner().invoke(main, ["predict", "pets", str(folder), "--server-url", pets.url])
    assert result.exit_code == 0, result.output
    assert "cat" in result.output and "zero" not in result.output


def test_names_when_the_server_gives_none() -> None:
    """One rule (contracts.dictionary): the digits' names up to ten classes, else indices; the
    pipeline's folder naming, the server's classify fallback and the clients agree."""
    from datasources.layouts import names_for_indices
    from serving.codec import encode_classify

    assert default_class_names(3) == ["zero", "one", "two"]
    assert default_class_names(26)[-1] == "25"
    assert default_class_names(len(DIGIT_CLASS_NAMES)) == list(DIGIT_CLASS_NAMES)
    for count in (2, 3, 10, 11, 26):
        assert list(names_for_indices(count)) == default_class_names(count)
        # a model whose dict.tsv (or lack of one) does not match its outputs
        row = encode_classify({"probabilities": np.full((1, count), 1 / count)}, ["a"])
        assert [name for name, _ in row["results"][0]] == default_class_names(count)


def _walk(node: object) -> Iterator[tuple[str, object]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_openapi_claims_no_class_count() -> None:
    doc = openapi_document()
    counts = {value for key, value in _walk(doc) if key in ("minItems", "maxItems")}
    assert 10 not in counts, "the document must not fix the number of classes"
    image = doc["components"]["schemas"]["ClassifyRequest"]["properties"]["examples"]["items"]
    pixels = image["properties"]["image"]
    assert pixels["minItems"] == pixels["maxItems"] == IMAGE_PIXELS
    text = json.dumps(doc)
    assert "probability per class" in text and "class name" in text
