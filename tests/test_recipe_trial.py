"""benchmarks/recipe_trial.py: each named augmentation builds the layers its docs table names,
and missing inputs say what to pass."""

from __future__ import annotations

import argparse
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


def test_fashion_trial_scores_on_fashion_and_names_the_missing_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    import numpy as np

    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(b"\0" * 16 + images.tobytes()))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0" * 8 + bytes([3, 7])))
    from benchmarks import small_data_bench

    monkeypatch.setattr(small_data_bench, "FASHION", tmp_path)
    xt, yt = recipe_trial.scoring_set("fashion", None)  # no --mnist-test needed
    assert xt.shape == (2, 28, 28, 1) and xt.max() == pytest.approx(images.max() / 255.0)
    assert yt.tolist() == [3, 7]
    with pytest.raises(SystemExit, match="dataset-fashion-mnist"):
        recipe_trial.load("fashion", None)  # the training files are missing
    assert recipe_trial.scoring_set("fashion-1k", None)[1].tolist() == [3, 7]


def test_each_trial_sets_the_chosen_hparams() -> None:
    args = argparse.Namespace(label_smoothings="budget,0.1", precisions="mixed_bfloat16",
                              filters="32/64,8/16", epochs="budget")
    chosen = recipe_trial.chosen_hparams(args)
    assert len(chosen) == 4 and chosen[0] == {"label_smoothing": None,
                                              "precision": "mixed_bfloat16",
                                              "filters_1": 32, "filters_2": 64, "epochs": None}
    assert {(c["label_smoothing"], c["filters_2"]) for c in chosen} == {
        (None, 64), (None, 16), (0.1, 64), (0.1, 16)}
    args.epochs = "budget,10"
    assert [c["epochs"] for c in recipe_trial.chosen_hparams(args)][:2] == [None, 10]


def test_hash_split_is_example_gens_and_full_batches_are_never_partial(tmp_path: Path) -> None:
    import numpy as np

    from benchmarks.tfx_example import write_tfx_records
    from datasources.readers import in_split

    records = write_tfx_records(tmp_path / "mnist.tfrecord", np.zeros((1000, 28, 28), np.uint8),
                                np.arange(1000) % 10)
    train, held = recipe_trial.hash_split(records)
    assert (len(train), len(held)) == (803, 197)  # the pipeline's split of TFX's 1,000 records
    assert sorted(train + held) == list(range(1000))
    assert all(in_split(f"mnist.tfrecord#{i}", "eval", 20) for i in held)
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    batches = [b[1].numpy().tolist() for b in
               recipe_trial.full_batches(x, np.arange(10), 4).take(6)]
    assert [len(b) for b in batches] == [4] * 6
    stream = sum(batches, [])
    assert sorted(stream[:10]) == sorted(stream[10:20]) == list(range(10))  # whole passes


def test_options_that_do_not_apply_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--split hash needs --dataset handwriting"):
        recipe_trial.main(["--split", "hash", "--dataset", "digits"])
    with pytest.raises(SystemExit, match="--last-batches"):
        recipe_trial.main(["--last-batches", "some", "--mnist-test", str(tmp_path)])
