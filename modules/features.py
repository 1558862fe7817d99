"""Feature keys, image geometry and class names shared by every stage.

The tf.Example layout written by our ExampleGen (and accepted as TFRecord input):

* ``image``: int64 list of ``IMAGE_PIXELS`` grey values 0..255, row-major 28x28.
* ``label``: int64 scalar class index 0..NUM_CLASSES-1.

Transform turns them into ``image_xf`` (float32 [28, 28, 1] in [0, 1]) and ``label_xf``.
"""

from __future__ import annotations

IMAGE_KEY = "image"
LABEL_KEY = "label"

IMAGE_HEIGHT = 28
IMAGE_WIDTH = 28
IMAGE_CHANNELS = 1
IMAGE_SHAPE = (IMAGE_HEIGHT, IMAGE_WIDTH, IMAGE_CHANNELS)
IMAGE_PIXELS = IMAGE_HEIGHT * IMAGE_WIDTH
NUM_CLASSES = 10


def transformed_name(key: str) -> str:
    """Name of a feature after Transform (``image`` -> ``image_xf``)."""
    return f"{key}_xf"


IMAGE_XF_KEY = transformed_name(IMAGE_KEY)
LABEL_XF_KEY = transformed_name(LABEL_KEY)

# Signature and tensor names of the exported SavedModel (see modules/signatures.py).
SERVING_DEFAULT = "serving_default"
SERVING_EXAMPLES = "serving_examples"
SERVING_IMAGES = "serving_images"
INPUT_IMAGES = "images"
INPUT_EXAMPLES = "examples"
INPUT_IMAGE_BYTES = "image_bytes"
OUTPUT_PROBABILITIES = "probabilities"

# The class-name dictionary travels with the model as <saved_model>/assets.extra/dict.tsv,
# a two-column TSV with a header "label<TAB>tag", like IRIS's splitter dict.tsv.
DICTIONARY_RELPATH = "assets.extra/dict.tsv"

DIGIT_CLASS_NAMES: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
)
FASHION_MNIST_CLASS_NAMES: tuple[str, ...] = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)


def format_dictionary(class_names: tuple[str, ...] | list[str]) -> str:
    """The dict.tsv text for ``class_names`` (index i -> name i)."""
    lines = ["label\ttag"] + [f"{i}\t{name}" for i, name in enumerate(class_names)]
    return "\n".join(lines) + "\n"


def parse_dictionary(text: str) -> list[str]:
    """Class names from dict.tsv text; accepts IRIS one-hot labels ("0,1,0,...") too."""
    names: dict[int, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or (lineno == 1 and line.lower().startswith("label")):
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise ValueError(f"dict.tsv line {lineno}: expected 'label<TAB>tag', got {raw!r}")
        key, tag = parts[0].strip(), parts[1].strip()
        if "," in key:
            onehot = [int(float(v)) for v in key.strip("[]").split(",")]
            if sorted(onehot) != [0] * (len(onehot) - 1) + [1]:
                raise ValueError(f"dict.tsv line {lineno}: {key!r} is not a one-hot label")
            index = onehot.index(1)
        else:
            index = int(key)
        names[index] = tag
    if not names:
        raise ValueError("dict.tsv holds no classes")
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"dict.tsv class indices must be 0..N-1, got {sorted(names)}")
    return [names[i] for i in range(len(names))]
