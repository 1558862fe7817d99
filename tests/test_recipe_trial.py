"""benchmarks/recipe_trial.py: each named augmentation builds the layers its docs table names,
and missing inputs say what to pass."""

from __future__ import annotations

from pathlib import Path

import pytest

import modules  # noqa: F401
from benchmarks import recipe_trial


def test_each_augmentation_trial_builds_its_layers() -> None:
    from modules.augmentation import AFFINE_SHEAR, RandomAffine

    (shipped,) = recipe_trial.augmentation("default")
    assert isinstance(shipped, RandomAffine) and shipped.shear == AFFINE_SHEAR
    (flat,) = recipe_trial.augmentation("no-slant")
    assert flat.shear == 0.0 and (flat.rotation, flat.zoom, flat.shift) == (
        shipped.rotation, shipped.zoom, shipped.shift)
    assert recipe_trial.augmentation("slant-0.5")[0].shear == 0.5
    chain = recipe_trial.augmentation("keras-chain")
    assert [type(layer).__name__ for layer in chain] == [
        "RandomRotation", "RandomZoom", "RandomTranslation"]
    with pytest.raises(SystemExit, match="keras-chain"):
        recipe_trial.augmentation("mixup")


def test_missing_inputs_name_the_flags(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--mnist-test"):
        recipe_trial.main(["--mnist-test", str(tmp_path)])
    with pytest.raises(SystemExit, match="--mnist-records"):
        recipe_trial.load("handwriting", tmp_path / "none.tfrecord")
