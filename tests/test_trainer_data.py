"""The Trainer's in-memory datasets: one iterator for the whole fit, each epoch one exact pass."""

from __future__ import annotations

import numpy as np

import modules  # noqa: F401  (Keras 2 before TensorFlow)


def _passes(dataset: object, steps: int, count: int) -> list[list[int]]:
    labels = [np.asarray(y).tolist() for _, y in dataset.take(steps * count)]  # type: ignore[attr-defined]
    return [sum(labels[i * steps:(i + 1) * steps], []) for i in range(count)]


def test_each_epoch_is_one_reshuffled_pass_with_a_partial_last_batch() -> None:
    import tensorflow as tf

    from modules.trainer import _repeated

    tf.keras.utils.set_random_seed(0)
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1) * np.ones((1, 28, 28, 1), np.float32)
    y = np.arange(10, dtype=np.int64)
    dataset, steps = _repeated((x, y), batch_size=4, shuffle=True)
    assert steps == 3  # 4 + 4 + 2
    passes = _passes(dataset, steps, 3)
    for one in passes:
        assert sorted(one) == list(range(10))  # every example once per epoch, none twice
    assert len({tuple(one) for one in passes}) > 1  # reshuffled between epochs
    sizes = [int(np.asarray(y).shape[0]) for _, y in dataset.take(steps)]
    assert sizes == [4, 4, 2]
    images, labels = next(iter(dataset))
    np.testing.assert_array_equal(images.numpy()[:, 0, 0, 0], labels.numpy())  # pairs kept

    ordered, steps = _repeated((x, y), batch_size=4, shuffle=False)
    assert _passes(ordered, steps, 2) == [list(range(10))] * 2


def test_the_fit_datasets_run_without_tf_data_autotuning() -> None:
    """Its thread would hold up the end of the fit (docs/training.md, "The stall after the last
    epoch"); both splits go without it."""
    from modules.trainer import in_memory_fit_data

    x = np.zeros((6, 28, 28, 1), np.float32)
    y = np.zeros(6, np.int64)
    fit = in_memory_fit_data((x, y), (x, y), batch_size=4)
    for dataset in (fit["x"], fit["validation_data"]):
        assert dataset.options().autotune.enabled is False
