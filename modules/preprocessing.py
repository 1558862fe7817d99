"""Transform's ``preprocessing_fn``: pixels 0..255 (int64 x 784) -> float32 [28, 28, 1] in [0, 1].

``scale_image`` is plain TensorFlow so the serving signatures and tests can use the very same
arithmetic without a Transform graph.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from modules import features


def scale_image(pixels: tf.Tensor) -> tf.Tensor:
    """Flat grey values 0..255 (any numeric dtype, [batch, 784]) -> float32 [batch, 28, 28, 1]."""
    scaled = tf.cast(pixels, tf.float32) / 255.0
    scaled = tf.clip_by_value(scaled, 0.0, 1.0)
    return tf.reshape(scaled, [-1, *features.IMAGE_SHAPE])


def preprocessing_fn(inputs: dict[str, Any]) -> dict[str, Any]:
    """tf.Transform callback: scale the image and pass the label through as a flat int64."""
    outputs: dict[str, Any] = {
        features.IMAGE_XF_KEY: scale_image(_dense(inputs[features.IMAGE_KEY])),
    }
    if features.LABEL_KEY in inputs:
        outputs[features.LABEL_XF_KEY] = tf.reshape(
            tf.cast(_dense(inputs[features.LABEL_KEY]), tf.int64), [-1]
        )
    return outputs


def _dense(tensor: Any) -> tf.Tensor:
    """Schema-less runs hand us SparseTensors; schema'd runs (fixed shape) hand us dense ones."""
    if isinstance(tensor, tf.SparseTensor):
        return tf.sparse.to_dense(tensor)
    if isinstance(tensor, tf.RaggedTensor):
        return tensor.to_tensor()
    return tensor
