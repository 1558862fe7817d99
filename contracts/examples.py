"""The tf.Example layout our ExampleGen writes (and TFRecord input must follow), and the classes.

* ``image``: int64 list of ``IMAGE_PIXELS`` grey values 0..255, row-major 28x28.
* ``label``: int64 scalar class index ``0..num_classes-1``.

Transform turns them into ``image_xf`` (float32 [28, 28, 1] in [0, 1]) and ``label_xf``. The
number of classes is not fixed: it comes from the data (label folders, ``dict.tsv`` or
``--class-names``) and travels with the model as its dictionary (``contracts.dictionary``).
"""

from __future__ import annotations

IMAGE_KEY = "image"
LABEL_KEY = "label"

IMAGE_HEIGHT = 28
IMAGE_WIDTH = 28
IMAGE_CHANNELS = 1
IMAGE_SHAPE = (IMAGE_HEIGHT, IMAGE_WIDTH, IMAGE_CHANNELS)
IMAGE_PIXELS = IMAGE_HEIGHT * IMAGE_WIDTH

MIN_CLASSES = 2
MAX_CLASSES = 1000


def transformed_name(key: str) -> str:
    """Name of a feature after Transform (``image`` -> ``image_xf``)."""
    return f"{key}_xf"


IMAGE_XF_KEY = transformed_name(IMAGE_KEY)
LABEL_XF_KEY = transformed_name(LABEL_KEY)

DIGIT_CLASS_NAMES: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
)
FASHION_MNIST_CLASS_NAMES: tuple[str, ...] = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)


def check_class_count(count: int, source: str) -> int:
    """``count`` if it is a supported number of classes, else a ValueError naming ``source``."""
    if not MIN_CLASSES <= count <= MAX_CLASSES:
        raise ValueError(f"{source}: {count} classes; a model needs between {MIN_CLASSES} and "
                         f"{MAX_CLASSES}")
    return count
