"""Batch inference without a server: Apache Beam's ``RunInference`` over one model version.

``mlmodel predict`` and ``mlmodel eval`` run the chosen SavedModel's ``serving_default``
signature over every example with Beam's RunInference transform, on the runner the Beam
arguments after ``--`` name (DirectRunner by default, in this process; Dataflow or Flink as the
pipeline's runners take them).

The model handler is ours, not Beam's ``TFModelHandlerNumpy``: that module imports
``tensorflow_hub``, and the hub release TFX 1.16 requires (0.15) imports ``tf.estimator``, which
TensorFlow 2.16 no longer has, so it cannot be imported in this stack. Ours loads the
SavedModel with ``tf.saved_model.load`` (no Keras needed; the serving signature is what the
server calls too) and is otherwise a plain Beam ``ModelHandler``.

Elements are chunks of ``CHUNK`` images (uint8, keyed by position), so Beam's per-element cost is
paid per thousand images. The chunks travel through a work directory (``FileSystems``: local, or
under ``--temp_location`` on remote runners), not inside the pipeline: ``beam.Create`` pickles
and zlib-compresses its values into the graph, which cost 3 s for 10,000 real images. Workers
read their chunk, write its probabilities beside it, and the driver reads them back in order.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from contracts.signatures import INPUT_IMAGES, OUTPUT_PROBABILITIES, SERVING_DEFAULT

CHUNK = 1000


def _handler_class() -> type:
    """The ModelHandler subclass (built lazily: importing Beam's ML module takes a second)."""
    from apache_beam.ml.inference.base import ModelHandler, PredictionResult

    class SavedModelHandler(ModelHandler[np.ndarray, PredictionResult, Any]):
        """Our SavedModel's ``serving_default``: a uint8 [b, 28, 28] chunk -> probabilities."""

        def __init__(self, model_dir: str) -> None:
            self._model_dir = model_dir

        def load_model(self) -> Any:
            from contracts.runtime import configure_tensorflow

            configure_tensorflow()
            import tensorflow as tf

            return tf.saved_model.load(self._model_dir)

        def run_inference(self, batch: Sequence[np.ndarray], model: Any,
                          inference_args: dict[str, Any] | None = None
                          ) -> Iterable[PredictionResult]:
            import tensorflow as tf

            serve = model.signatures[SERVING_DEFAULT]
            for chunk in batch:
                images = tf.constant(chunk[..., None].astype(np.float32) / 255.0)
                probabilities = serve(**{INPUT_IMAGES: images})[OUTPUT_PROBABILITIES].numpy()
                yield PredictionResult(chunk, probabilities)

        def batch_elements_kwargs(self) -> dict[str, int]:
            return {"min_batch_size": 1, "max_batch_size": 1}  # an element is a chunk already

        def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
            return int(sum(chunk.nbytes for chunk in batch))

    return SavedModelHandler


def _results_dir(options: Any) -> tuple[str, bool]:
    """Where workers write results: ``--temp_location`` if given, else a local temp dir."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    remote = options.view_as(GoogleCloudOptions).temp_location
    if remote:
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.join(remote, f"mlmodel-predict-{os.getpid()}-{os.urandom(4).hex()}"), False
    return tempfile.mkdtemp(prefix="mlmodel-predict-"), True


def _save(path: str, array: np.ndarray) -> None:
    from apache_beam.io.filesystems import FileSystems

    buffer = io.BytesIO()
    np.save(buffer, array)
    with FileSystems.create(path) as out:
        out.write(buffer.getvalue())


def _load(path: str) -> np.ndarray:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as stream:
        return np.load(io.BytesIO(stream.read()))


class _ReadChunk:
    """Index -> (index, the uint8 chunk the driver wrote as ``<dir>/in-<index>.npy``)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def __call__(self, index: int) -> tuple[int, np.ndarray]:
        from apache_beam.io.filesystems import FileSystems

        return index, _load(FileSystems.join(self.directory, f"in-{index:08d}.npy"))


class _WriteChunk:
    """(index, PredictionResult) -> its probabilities as ``<dir>/out-<index>.npy``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def __call__(self, keyed: tuple[int, Any]) -> int:
        from apache_beam.io.filesystems import FileSystems

        index, result = keyed
        _save(FileSystems.join(self.directory, f"out-{index:08d}.npy"),
              np.asarray(result.inference, dtype=np.float32))
        return index


def _chunks(pixels: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    for index, start in enumerate(range(0, len(pixels), CHUNK)):
        yield index, pixels[start:start + CHUNK]


def run_inference(model_dir: str, pixels: np.ndarray, beam_args: Sequence[str] = ()) -> np.ndarray:
    """Probabilities float32 [n, classes] for uint8 images [n, 28, 28], in order."""
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(list(beam_args) or ["--runner=DirectRunner"])
    directory, local = _results_dir(options)
    try:
        indices = []
        for index, chunk in _chunks(pixels):
            _save(FileSystems.join(directory, f"in-{index:08d}.npy"), np.ascontiguousarray(chunk))
            indices.append(index)
        with beam.Pipeline(options=options) as pipeline:
            _ = (pipeline
                 | "Chunks" >> beam.Create(indices)
                 | "Read" >> beam.Map(_ReadChunk(directory))
                 | "RunInference" >> RunInference(KeyedModelHandler(_handler_class()(model_dir)))
                 | "Write" >> beam.Map(_WriteChunk(directory)))
        parts = [_load(FileSystems.join(directory, f"out-{index:08d}.npy")) for index in indices]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    finally:
        if local:
            import shutil

            shutil.rmtree(directory, ignore_errors=True)
        else:
            FileSystems.delete([directory])
