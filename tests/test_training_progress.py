"""The Trainer's epochs reach the terminal without --verbose: callback -> file -> runner line."""

from __future__ import annotations

import io
import os

import numpy as np

from modules.training_progress import PROGRESS_ENV, EpochProgress, estimate_left
from pipeline.progress import EpochWatcher, ProgressReporter, training_progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _record(epoch: int, accuracy: float, best: float, best_epoch: int) -> EpochProgress:
    return EpochProgress(epoch=epoch, epochs=45, eval_accuracy=accuracy, best_accuracy=best,
                         best_epoch=best_epoch, seconds=2.0 * epoch, seconds_left=30.0)


def test_a_record_survives_its_line_and_reads_for_people() -> None:
    record = _record(12, 0.9806, 0.9861, 10)
    assert EpochProgress.from_line(record.to_line()) == record
    assert EpochProgress.from_line('{"epoch": 1') is None  # a torn line is skipped
    assert record.describe() == ("epoch 12/45, eval accuracy 0.9806 (best 0.9861, epoch 10), "
                                 "about 30 s left")


def test_time_left_follows_the_pace_and_the_time_limit() -> None:
    assert estimate_left(epoch=10, epochs=40, seconds=20.0, limit_seconds=None) == 60.0
    assert estimate_left(epoch=10, epochs=40, seconds=20.0, limit_seconds=50.0) == 30.0
    assert estimate_left(epoch=40, epochs=40, seconds=80.0, limit_seconds=None) == 0.0


def test_one_line_per_epoch_when_not_a_terminal() -> None:
    out = io.StringIO()
    reporter = ProgressReporter(out, total=3)
    reporter.started("Trainer")
    reporter.epoch(_record(1, 0.5, 0.5, 1))
    reporter.epoch(_record(2, 0.4, 0.5, 1))
    reporter.finished("Trainer")
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[1].startswith("[ 1/3] Trainer") and "epoch 1/45" in lines[1]
    assert "epoch 2/45, eval accuracy 0.4000 (best 0.5000, epoch 1)" in lines[2]
    assert "done in" in lines[3]


def test_in_place_on_a_terminal_and_cleared_before_the_next_line() -> None:
    out = _Terminal()
    reporter = ProgressReporter(out, total=3)
    reporter.started("Trainer")
    reporter.epoch(_record(1, 0.5, 0.5, 1))
    reporter.epoch(_record(2, 0.6, 0.6, 2))
    reporter.finished("Trainer")
    text = out.getvalue()
    assert text.count("\n") == 2  # started and done; the epochs overwrite each other
    assert "\r\033[K[ 1/3] Trainer" in text and "epoch 2/45" in text
    assert text.endswith("\n") and "\r\033[K[ 1/3] Trainer                      done" in text


def test_the_watcher_reports_complete_lines_only(tmp_path) -> None:
    path = tmp_path / "progress.jsonl"
    out = io.StringIO()
    reporter = ProgressReporter(out, total=1)
    watcher = EpochWatcher(str(path), reporter)
    watcher.poll()  # no file yet: nothing, no error
    line = _record(1, 0.5, 0.5, 1).to_line()
    path.write_text(line + line[:10])
    watcher.poll()
    assert out.getvalue().count("epoch 1/45") == 1
    with open(path, "a") as handle:
        handle.write(line[10:])
    watcher.poll()
    assert out.getvalue().count("epoch 1/45") == 2


def test_the_keras_callback_writes_what_the_runner_shows() -> None:
    import tensorflow as tf

    from modules.hparams import HParams
    from modules.model import ProgressFile, build_model

    out = io.StringIO()
    reporter = ProgressReporter(out, total=1)
    reporter.started("Trainer")
    with training_progress(reporter):
        path = os.environ[PROGRESS_ENV]
        model = build_model(HParams(filters_1=4, filters_2=4, hidden_units_1=8, hidden_units_2=8,
                                    augment=False))
        x = np.random.default_rng(0).random((16, 28, 28, 1), dtype=np.float32)
        y = np.arange(16) % 10
        tf.keras.utils.set_random_seed(0)
        model.fit(x, y, epochs=3, batch_size=8, validation_data=(x, y), verbose=0,
                  callbacks=[ProgressFile(path, epochs=3, max_train_minutes=60.0)])
    assert PROGRESS_ENV not in os.environ and not os.path.exists(path)
    lines = [line for line in out.getvalue().splitlines() if "epoch " in line]
    assert [line.split("epoch ")[1].split(",")[0] for line in lines] == ["1/3", "2/3", "3/3"]
    assert all("eval accuracy" in line and "left" in line for line in lines)
