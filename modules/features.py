"""Feature keys, image geometry, signature names and class names for the user code.

The source of truth is ``contracts/`` (dependency-free, shared with the registry and the server);
this module re-exports what ``modules/`` needs, so user code reads ``features.IMAGE_KEY`` as
TFX's templates do. The number of classes is not fixed: it is ``len(class_names)``, from the data.
"""

from __future__ import annotations

from contracts.dictionary import format_dictionary, parse_dictionary
from contracts.examples import (
    DIGIT_CLASS_NAMES,
    FASHION_MNIST_CLASS_NAMES,
    IMAGE_CHANNELS,
    IMAGE_HEIGHT,
    IMAGE_KEY,
    IMAGE_PIXELS,
    IMAGE_SHAPE,
    IMAGE_WIDTH,
    IMAGE_XF_KEY,
    LABEL_KEY,
    LABEL_XF_KEY,
    MAX_CLASSES,
    MIN_CLASSES,
    transformed_name,
)
from contracts.signatures import (
    DICTIONARY_RELPATH,
    INPUT_EXAMPLES,
    INPUT_IMAGE_BYTES,
    INPUT_IMAGES,
    OUTPUT_PROBABILITIES,
    SERVING_DEFAULT,
    SERVING_EXAMPLES,
    SERVING_IMAGES,
)

__all__ = [
    "DICTIONARY_RELPATH", "DIGIT_CLASS_NAMES", "FASHION_MNIST_CLASS_NAMES", "IMAGE_CHANNELS",
    "IMAGE_HEIGHT", "IMAGE_KEY", "IMAGE_PIXELS", "IMAGE_SHAPE", "IMAGE_WIDTH", "IMAGE_XF_KEY",
    "INPUT_EXAMPLES", "INPUT_IMAGES", "INPUT_IMAGE_BYTES", "LABEL_KEY", "LABEL_XF_KEY",
    "MAX_CLASSES", "MIN_CLASSES", "OUTPUT_PROBABILITIES", "SERVING_DEFAULT", "SERVING_EXAMPLES",
    "SERVING_IMAGES", "format_dictionary", "parse_dictionary", "transformed_name",
]
