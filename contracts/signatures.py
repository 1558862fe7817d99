"""Signature and tensor names of the exported SavedModel (built by ``modules/signatures.py``).

* ``serving_default``: ``images`` float32 [None, 28, 28, 1] in [0, 1] -> ``probabilities``
  float32 [None, num_classes].
* ``serving_examples``: ``examples`` serialized tf.Examples (raw layout) -> ``probabilities``.
* ``serving_images``: ``image_bytes`` PNG/JPEG/GIF/BMP bytes -> ``probabilities`` (the model
  server also accepts WebP, which it transcodes to PNG first: serving/image_formats.py).
"""

from __future__ import annotations

SERVING_DEFAULT = "serving_default"
SERVING_EXAMPLES = "serving_examples"
SERVING_IMAGES = "serving_images"

INPUT_IMAGES = "images"
INPUT_EXAMPLES = "examples"
INPUT_IMAGE_BYTES = "image_bytes"
OUTPUT_PROBABILITIES = "probabilities"

# Inside a SavedModel directory.
SAVED_MODEL_FILE = "saved_model.pb"
DICTIONARY_RELPATH = "assets.extra/dict.tsv"
SAVED_MODEL_SUBDIR = "Format-Serving"  # the Trainer's SavedModel inside a TFX Model artifact
