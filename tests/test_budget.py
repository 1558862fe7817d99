"""The training budget follows the data: plan, early stopping, time limit, and a real run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modules.budget import MAX_EPOCHS, MIN_EPOCHS, MIN_STEPS, plan_budget
from modules.hparams import HParams
from modules.image_profile import ImageProfile, ink_margin_px, measure


def _steps_per_example(train_examples: int) -> float:
    budget = plan_budget(train_examples, HParams())
    return budget.planned_steps / train_examples


def test_small_data_get_more_updates_per_example_than_big_data() -> None:
    small, big = plan_budget(200, HParams()), plan_budget(20_000, HParams())
    assert _steps_per_example(200) > 10 * _steps_per_example(20_000)
    assert small.epochs > big.epochs and small.batch_size < big.batch_size
    assert small.planned_steps >= min(MIN_STEPS, MAX_EPOCHS * small.steps_per_epoch)
    assert big.epochs >= MIN_EPOCHS


@pytest.mark.parametrize("train_examples", [10, 200, 800, 1_437, 5_001, 20_001, 60_000, 2_000_000])
def test_budget_bounds_hold_for_any_size(train_examples: int) -> None:
    budget = plan_budget(train_examples, HParams())
    assert MIN_EPOCHS <= budget.epochs <= MAX_EPOCHS
    assert budget.steps_per_epoch == -(-train_examples // budget.batch_size)
    assert budget.planned_steps >= MIN_STEPS or budget.epochs == MAX_EPOCHS
    assert f"{train_examples:,} training examples" in budget.reason


def test_bigger_data_never_get_a_smaller_batch_or_more_epochs() -> None:
    plans = [plan_budget(n, HParams()) for n in (100, 1_000, 5_000, 10_000, 50_000, 500_000)]
    assert [p.batch_size for p in plans] == sorted(p.batch_size for p in plans)
    assert [p.epochs for p in plans] == sorted((p.epochs for p in plans), reverse=True)


def test_augmentation_follows_examples_per_class() -> None:
    assert plan_budget(800, HParams(), num_classes=10).augment is True      # 80 per class
    assert plan_budget(60_000, HParams(), num_classes=10).augment is False  # 6,000 per class
    assert plan_budget(60_000, HParams(), num_classes=100).augment is True  # 600 per class


def test_explicit_flags_win_and_the_reason_says_so() -> None:
    budget = plan_budget(800, HParams(epochs=3, batch_size=128, augment=False))
    assert (budget.epochs, budget.batch_size, budget.augment) == (3, 128, False)
    assert "--epochs" in budget.reason and "--batch-size" in budget.reason
    assert "--no-augment" in budget.reason
    applied = budget.apply(HParams(dropout=0.3))
    assert applied.resolved and applied.dropout == 0.3 and applied.epochs == 3


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="training split is empty"):
        plan_budget(0, HParams())
    with pytest.raises(ValueError, match="--max-train-minutes"):
        plan_budget(10, HParams(), max_train_minutes=0)


def _fit(budget_epochs: int, max_minutes: float | None = None, patience_epochs: int = 2):
    """A tiny model fit under the budget's callbacks; returns (model, history, callbacks, weights)."""
    import dataclasses

    import tensorflow as tf

    from modules.model import budget_callbacks

    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    xe = rng.normal(size=(32, 4)).astype(np.float32)
    ye = rng.integers(0, 2, size=32)  # unrelated labels: eval accuracy wanders, peaks early
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2, activation="softmax")])
    model.compile(tf.keras.optimizers.Adam(0.3), "sparse_categorical_crossentropy",
                  [tf.keras.metrics.SparseCategoricalAccuracy(name="sparse_categorical_accuracy")])
    budget = dataclasses.replace(plan_budget(64, HParams(epochs=budget_epochs, batch_size=64),
                                             max_train_minutes=max_minutes),
                                 patience=patience_epochs, watch_from_epoch=0)
    weights: list[list[np.ndarray]] = []
    keep = tf.keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: weights.append(model.get_weights()))
    early, limit = budget_callbacks(budget)
    history = model.fit(x, y, batch_size=64, epochs=budget_epochs, validation_data=(xe, ye),
                        callbacks=[keep, early, limit], verbose=0)
    return model, history.history, (early, limit), weights


def test_early_stopping_restores_the_best_epochs_weights() -> None:
    model, history, (early, _), weights = _fit(budget_epochs=40)
    accuracy = history["val_sparse_categorical_accuracy"]
    best = len(accuracy) - 1 - int(np.argmax(accuracy[::-1]))  # the last epoch with the best
    assert early.best_epoch == best
    assert len(accuracy) < 40, "eval accuracy on unrelated labels should stop improving"
    for kept, at_best in zip(model.get_weights(), weights[best], strict=True):
        np.testing.assert_array_equal(kept, at_best)
    if best != len(accuracy) - 1:
        assert any(not np.array_equal(a, b) for a, b in zip(model.get_weights(), weights[-1],
                                                             strict=True))


def test_a_tie_with_the_best_eval_accuracy_keeps_the_later_epoch() -> None:
    import tensorflow as tf

    from modules.budget import EARLY_STOPPING_MONITOR
    from modules.model import LaterTiesEarlyStopping

    model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
    def run(tolerance: float) -> LaterTiesEarlyStopping:
        early = LaterTiesEarlyStopping(tolerance=tolerance, monitor=EARLY_STOPPING_MONITOR,
                                       mode="max", patience=2, restore_best_weights=True)
        early.set_model(model)
        early.on_train_begin()
        model.stop_training = False
        for epoch, accuracy in enumerate([0.90, 1.0, 0.98, 379 / 380, 0.99, 0.99, 0.98]):
            early.on_epoch_end(epoch, {EARLY_STOPPING_MONITOR: accuracy})
            if model.stop_training:
                break
        return early

    exact, one_image = run(0.0), run(1 / 380)
    assert (exact.best_epoch, exact.stopped_epoch) == (1, 3)
    # 379/380 is within one eval image of 1.0: the later, lower-rate epoch is kept, the patience
    # restarts there, and the best accuracy stays 1.0 (0.99 is not within one image of it)
    assert (one_image.best_epoch, one_image.stopped_epoch, one_image.best) == (3, 5, 1.0)


def test_one_example_below_the_best_is_a_tie_in_float32_too() -> None:
    """Keras logs float32 accuracies: 380/382 against a best of 381/382 is exactly one example
    below, and must count as a tie whichever way the rounding goes (a CI `make run` stopped
    early on it and kept a mid-schedule epoch)."""
    import numpy as np
    import tensorflow as tf

    from modules.budget import EARLY_STOPPING_MONITOR
    from modules.model import LaterTiesEarlyStopping

    model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
    early = LaterTiesEarlyStopping(tolerance=1 / 382, monitor=EARLY_STOPPING_MONITOR,
                                   mode="max", patience=2, restore_best_weights=True)
    early.set_model(model)
    early.on_train_begin()
    model.stop_training = False
    for epoch, errors in enumerate([5, 1, 2, 2, 2, 2, 4, 4, 4]):
        early.on_epoch_end(epoch, {EARLY_STOPPING_MONITOR: float(np.float32(1 - errors / 382))})
        if model.stop_training:
            break
    assert (early.best_epoch, early.stopped_epoch) == (5, 7)


def test_time_limit_stops_training_in_the_first_epoch() -> None:
    _, history, (_, limit), _ = _fit(budget_epochs=50, max_minutes=1e-9, patience_epochs=100)
    assert limit.stopped_epoch == 0
    assert len(history["loss"]) == 1


@pytest.mark.slow
def test_a_run_without_training_flags_records_a_data_derived_budget(tmp_path) -> None:
    from click.testing import CliRunner

    from pipeline.config import PipelineConfig
    from pipeline.run import run_pipeline
    from registry.cli import cli as mlmodel
    from tests.conftest import TINY_HPARAMS
    from tests.datagen import write_png_folder

    data = write_png_folder(tmp_path / "data", n_per_class=20)  # 200 images, 80/20 by hash
    hparams = TINY_HPARAMS.replace()  # tiny layers; epochs, batch and augmentation left unset
    hparams = HParams(**{**hparams.to_dict(), "epochs": None, "batch_size": None, "augment": None})
    config = PipelineConfig(
        model_name="budget", data=str(data), pipeline_root=str(tmp_path / "root"),
        metadata_path=str(tmp_path / "metadata.sqlite"), serving_dir=str(tmp_path / "serving"),
        log_dir=str(tmp_path / "logs"), hparams=hparams, accuracy_threshold=0.0,
    )
    import io

    out = io.StringIO()
    summary = run_pipeline(config, out=out)
    training = summary.training
    expected = plan_budget(training["train_examples"], hparams, num_classes=10,
                           profile=ImageProfile(training["image_margin_px"],
                                                training["image_detail"]))
    assert training["image_margin_px"] is not None  # measured from the training images
    assert training["batch_size"] == expected.batch_size == 32
    assert training["epochs"] == expected.epochs and training["augment"] is True
    assert 1 <= training["best_epoch"] <= training["epochs_run"] <= training["epochs"]
    assert training["reason"] == expected.reason
    assert "training:" in out.getvalue() and "why: " in out.getvalue()
    result = CliRunner().invoke(mlmodel, ["summary", "budget", "training,parameter", "--metadata",
                                          config.metadata_path, "--output", "json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["training"]["epochs_run"] == training["epochs_run"]
    assert shown["parameter"]["batch_size"] == 32 and shown["parameter"]["epochs"] == expected.epochs


def _frames(margin: int, n: int = 12) -> np.ndarray:
    """``n`` 28x28 images whose ink (random strokes) stops ``margin`` pixels from every edge."""
    rng = np.random.default_rng(margin)
    images = np.zeros((n, 28, 28, 1), np.float32)
    inner = slice(margin, 28 - margin)
    images[:, inner, inner, 0] = rng.random((n, 28 - 2 * margin, 28 - 2 * margin)) * 0.5
    images[:, margin, inner, 0] = images[:, 27 - margin, inner, 0] = 1.0  # ink on the box's edges
    images[:, inner, margin, 0] = images[:, inner, 27 - margin, 0] = 1.0
    return images


def test_ink_margin_is_measured_from_the_pixels() -> None:

    assert ink_margin_px(_frames(4)) == 4.0
    assert ink_margin_px(_frames(0)[..., 0]) == 0.0  # (N, H, W) too
    assert ink_margin_px(np.zeros((3, 28, 28))) == 0.0  # blank images carry no margin
    faint = _frames(4)
    faint[:, 1, 1, 0] = 0.1  # blur below a fifth of the peak is not ink
    assert ink_margin_px(faint) == 4.0
    with pytest.raises(ValueError, match="ink_margin_px needs images"):
        ink_margin_px(np.zeros((28, 28)))


def test_augmentation_policy_follows_the_images_not_the_name() -> None:
    from modules.budget import AFFINE_MIN_MARGIN_PX

    inside = plan_budget(800, HParams(), profile=measure(_frames(4)))
    filling = plan_budget(800, HParams(), profile=measure(_frames(0)))
    assert (inside.augmentation, filling.augmentation) == ("affine", "shift")
    assert "ink margin 4 px" in inside.reason and "objects fill the frame" in filling.reason
    edge = ImageProfile(margin_px=AFFINE_MIN_MARGIN_PX, detail=0.1)
    assert plan_budget(800, HParams(), profile=edge).augmentation == "affine"
    assert plan_budget(800, HParams()).augmentation == "shift"  # not measured: the old default
    big = plan_budget(60_000, HParams(), profile=edge)  # augmentation off: no policy
    assert (big.augment, big.augmentation) == (False, "none")
    forced = plan_budget(800, HParams(augmentation="shift"), profile=edge)
    assert forced.augmentation == "shift" and "set in the hyperparameters" in forced.reason
    assert inside.apply(HParams()).augmentation == "affine"
    assert inside.to_dict()["image_margin_px"] == 4.0


def test_fine_detail_tells_upscaled_scans_from_sharp_images() -> None:
    from modules.budget import SMOOTH_MAX_DETAIL
    from modules.image_profile import fine_detail

    sharp = np.random.default_rng(0).random((8, 28, 28, 1))
    smooth = np.stack([np.outer(np.hanning(28), np.hanning(28))] * 8)[..., None]
    assert fine_detail(sharp) > 0.5 > SMOOTH_MAX_DETAIL > fine_detail(smooth)
    assert fine_detail(np.zeros((2, 28, 28))) == 0.0
    with pytest.raises(ValueError, match="fine_detail needs images"):
        fine_detail(np.zeros(28))


def test_input_blur_only_for_smooth_training_images() -> None:
    from modules.budget import INPUT_BLUR_PX

    smooth = plan_budget(1_437, HParams(), profile=ImageProfile(margin_px=4.0, detail=0.026))
    sharp = plan_budget(800, HParams(), profile=ImageProfile(margin_px=0.0, detail=0.101))
    assert (smooth.input_blur, sharp.input_blur) == (INPUT_BLUR_PX, 0.0)
    assert "1 px when serving, 0.5 px while training" in smooth.reason
    assert "no input blur (fine detail 0.101" in sharp.reason
    assert smooth.apply(HParams()).input_blur == INPUT_BLUR_PX
    # at half resolution a second conv per block costs what one did: two; sharp images one
    assert (smooth.convs_per_block, sharp.convs_per_block) == (2, 1)
    assert "2 convs per block at half resolution" in smooth.reason
    assert plan_budget(800, HParams(convs_per_block=3)).apply(HParams()).convs_per_block == 3
    assert plan_budget(800, HParams()).input_blur == 0.0  # not measured: none
    forced = plan_budget(800, HParams(input_blur=0.0), profile=ImageProfile(4.0, 0.01))
    assert forced.input_blur == 0.0 and "--input-blur" in forced.reason
    with pytest.raises(ValueError, match="input_blur must be in"):
        HParams(input_blur=-1.0)


def test_precision_follows_the_cpu_and_the_flag_wins(tmp_path) -> None:
    from modules.budget import precision_for
    from modules.precision import native_bfloat16

    native = "mixed_bfloat16" if native_bfloat16() else "float32"
    for size in (800, 48_000):  # small data too: fits 0.7-0.85x at the same accuracy
        assert plan_budget(size, HParams()).precision == native
    assert precision_for(HParams(), "avx512_bf16") == (
        "mixed_bfloat16", "mixed bfloat16 training (the CPU has avx512_bf16; weights and the "
        "served model stay float32)")
    assert precision_for(HParams(), "") == (
        "float32", "float32 (no native bfloat16 on this CPU)")
    assert precision_for(HParams(precision="float32"), "avx512_bf16")[0] == "float32"
    narrow = HParams(filters_1=16, filters_2=32)  # too narrow for bfloat16 to pay
    assert precision_for(narrow, "avx512_bf16") == (
        "float32", "float32 (32 filters in the second conv block < 64: too narrow for bfloat16 "
        "to pay)")
    assert precision_for(narrow.replace(precision="mixed_bfloat16"), "")[0] == "mixed_bfloat16"
    forced = plan_budget(800, HParams(precision="float32"))
    assert forced.precision == "float32" and "float32 (set: --precision)" in forced.reason
    assert forced.apply(HParams()).precision == "float32"
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16\n")
    assert native_bfloat16(str(cpuinfo)) == "avx512_bf16"
    cpuinfo.write_text("processor : 0\nflags : fpu sse avx2\n")
    assert native_bfloat16(str(cpuinfo)) is None
    cpuinfo.write_text("processor : 0\nFeatures : fp asimd bf16\n")  # arm64: no flags line
    assert native_bfloat16(str(cpuinfo)) is None
    assert native_bfloat16(str(tmp_path / "missing")) is None
    with pytest.raises(ValueError, match="precision must be one of"):
        HParams(precision="float16")


def test_label_smoothing_only_without_augmentation_and_the_flag_wins() -> None:
    from modules.budget import LABEL_SMOOTHING

    big, small = plan_budget(48_000, HParams()), plan_budget(800, HParams())
    assert (big.augment, big.label_smoothing) == (False, LABEL_SMOOTHING)
    assert f"label smoothing {LABEL_SMOOTHING:g}" in big.reason
    assert (small.augment, small.label_smoothing) == (True, 0.0)
    assert "no label smoothing (augmentation regularises)" in small.reason
    assert big.apply(HParams()).label_smoothing == LABEL_SMOOTHING
    assert small.apply(HParams()).label_smoothing == 0.0
    # --no-augment on small data turns it on; an explicit value wins either way.
    assert plan_budget(800, HParams(augment=False)).label_smoothing == LABEL_SMOOTHING
    forced = plan_budget(48_000, HParams(label_smoothing=0.0))
    assert forced.label_smoothing == 0.0 and "(set: --label-smoothing)" in forced.reason
    assert plan_budget(800, HParams(label_smoothing=0.2)).apply(HParams()).label_smoothing == 0.2
    assert json.loads(json.dumps(big.to_dict()))["label_smoothing"] == LABEL_SMOOTHING
    assert HParams.from_dict({"label_smoothing": "0.1"}).label_smoothing == 0.1
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        HParams(label_smoothing=0.9)
