"""The exported SavedModel: three signatures over one model, plus the class dictionary.

* ``serving_default``  float32 ``images`` [None, 28, 28, 1] in [0, 1] -> ``probabilities`` [None, classes]
  (what IRIS's curl call and TF Serving clients send).
* ``serving_examples`` string ``examples`` [None] (serialized tf.Example, raw features) -> same.
  With a Transform output the raw features go through Transform's graph; TFMA and ``:classify``
  use this signature.
* ``serving_images``   string ``image_bytes`` [None] (PNG/JPEG/GIF/BMP bytes) -> same. Colour
  images become grey, other sizes are resized to 28x28.

All three end in the same Keras model, so one image gives one answer through any of them.
"""

from __future__ import annotations

from contracts.runtime import configure_tensorflow

configure_tensorflow()  # Keras 2 before TensorFlow is imported (see contracts/runtime.py)

import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from modules import features, preprocessing


def _raw_feature_spec() -> dict[str, tf.io.FixedLenFeature]:
    return {features.IMAGE_KEY: tf.io.FixedLenFeature([features.IMAGE_PIXELS], tf.int64)}


def decode_image_bytes(image_bytes: tf.Tensor) -> tf.Tensor:
    """Encoded image bytes [batch] -> float32 [batch, 28, 28, 1] in [0, 1]."""

    def decode_one(encoded: tf.Tensor) -> tf.Tensor:
        # Decode with the channels the file has: TensorFlow refuses channels=1 for BMP and GIF
        # ("`channels` must be 0, 3 or 4 for BMP"). Colour becomes grey; alpha is dropped.
        image = tf.io.decode_image(encoded, expand_animations=False)
        image = tf.cond(tf.shape(image)[-1] >= 3,
                        lambda: tf.cast(tf.image.rgb_to_grayscale(image[..., :3]), tf.uint8),
                        lambda: image[..., :1])
        image = tf.image.resize(image, [features.IMAGE_HEIGHT, features.IMAGE_WIDTH])
        return tf.reshape(image, features.IMAGE_SHAPE)

    decoded = tf.map_fn(
        decode_one, image_bytes, fn_output_signature=tf.TensorSpec(features.IMAGE_SHAPE, tf.float32)
    )
    return tf.clip_by_value(decoded / 255.0, 0.0, 1.0)


def make_signatures(model: tf.keras.Model, tf_transform_output: Any = None) -> dict[str, Any]:
    """The three concrete serving functions for ``model``.

    ``tf_transform_output`` is a ``tft.TFTransformOutput``; when given, ``serving_examples`` runs the
    raw features through Transform's graph (attached to the model so it is saved with it).
    """
    if tf_transform_output is not None:
        model.tft_layer = tf_transform_output.transform_features_layer()
        raw_spec = tf_transform_output.raw_feature_spec()
        raw_spec.pop(features.LABEL_KEY, None)
    else:
        raw_spec = _raw_feature_spec()

    def predict(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {features.OUTPUT_PROBABILITIES: model(images, training=False)}

    @tf.function(input_signature=[
        tf.TensorSpec([None, *features.IMAGE_SHAPE], tf.float32, name=features.INPUT_IMAGES)
    ])
    def serve_images_tensor(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.INPUT_EXAMPLES)])
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(examples, raw_spec)
        if tf_transform_output is not None:
            images = model.tft_layer(parsed)[features.IMAGE_XF_KEY]
        else:
            images = preprocessing.scale_image(parsed[features.IMAGE_KEY])
        return predict(tf.reshape(tf.cast(images, tf.float32), [-1, *features.IMAGE_SHAPE]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.INPUT_IMAGE_BYTES)])
    def serve_image_bytes(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict(decode_image_bytes(image_bytes))

    return {
        features.SERVING_DEFAULT: serve_images_tensor.get_concrete_function(),
        features.SERVING_EXAMPLES: serve_examples.get_concrete_function(),
        features.SERVING_IMAGES: serve_image_bytes.get_concrete_function(),
    }


def export_serving_model(
    model: tf.keras.Model,
    export_dir: str,
    tf_transform_output: Any = None,
    class_names: Sequence[str] = features.DIGIT_CLASS_NAMES,
) -> str:
    """Write ``model`` as a SavedModel with our signatures and dict.tsv, atomically.

    The model is saved into a sibling temporary directory and renamed into place, so
    ``export_dir`` never exists half-written. Returns ``export_dir``.
    """
    outputs = int(model.outputs[0].shape[-1])
    if len(class_names) != outputs:
        raise ValueError(
            f"class_names must name the model's {outputs} classes, got {len(class_names)}"
        )
    signatures = make_signatures(model, tf_transform_output)
    parent = os.path.dirname(os.path.abspath(export_dir)) or "."
    is_local = "://" not in export_dir
    if is_local:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".saving-", dir=parent)
    else:
        staging = export_dir
    tf.saved_model.save(model, staging, signatures=signatures)
    dictionary_path = os.path.join(staging, features.DICTIONARY_RELPATH)
    tf.io.gfile.makedirs(os.path.dirname(dictionary_path))
    with tf.io.gfile.GFile(dictionary_path, "w") as handle:
        handle.write(features.format_dictionary(tuple(class_names)))
    if is_local:
        if os.path.exists(export_dir):
            shutil.rmtree(export_dir)
        os.replace(staging, export_dir)
    return export_dir
