"""Reading what a capturing server wrote, for the capture tests: its finished files and their
``PredictionLog`` records, read with TensorFlow's own TFRecord reader (which checks every
record's length and data CRCs) and TF Serving's proto classes, not with the project's code."""

from __future__ import annotations

from pathlib import Path

from contracts import capture as layout

MODEL = "mnist"


def finished_files(capture_dir: Path, model: str = MODEL, version: int = 1) -> list[Path]:
    folder = Path(layout.version_dir(str(capture_dir), model, version))
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if layout.is_capture_file(p.name))


def read_logs(files: list[Path]) -> list:  # noqa: ANN201 - PredictionLog protos
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for path in files:
        for record in tf.data.TFRecordDataset(str(path)):
            logs.append(prediction_log_pb2.PredictionLog.FromString(record.numpy()))
    return logs
