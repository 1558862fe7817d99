"""Where the pipeline's data comes from: ``--data``, ``--dataset digits`` or ``--dataset fashion-mnist``.

* ``digits`` (the default): scikit-learn's bundled 1,797 handwritten digits, 8x8 with values
  0..16, upscaled MNIST-style (a smooth resize to 20x20, centred in 28x28 with a 4 px border,
  0..255) and written once as ``<data_root>/digits/<label>/<n>.png``.
* ``fashion-mnist``: the IDX files of Debian's ``dataset-fashion-mnist`` package.

No TensorFlow is imported here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts import examples as features
from datasources.layouts import InputLayout
from datasources.readers import DataError

DATASETS = ("digits", "fashion-mnist")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
DIGITS_COUNT = 1797  # sklearn.datasets.load_digits()
DIGIT_BOX = 20  # MNIST digits fit a 20x20 box centred in 28x28
COMPLETE_MARKER = ".complete"  # hidden, so readers ignore it


@dataclass(frozen=True)
class ResolvedData:
    path: str
    class_names: tuple[str, ...]
    description: str
    layout: InputLayout | None = None  # what detect_layout found (once per run, before Beam)
    layout_eval_percent: int | None = None  # the eval_percent it was checked with

    def layout_for(self, eval_percent: int) -> InputLayout | None:
        """The layout found at resolve time when it was checked for this ``eval_percent`` (the
        empty-split check depends on it); None means: detect again."""
        return self.layout if self.layout_eval_percent == eval_percent else None


def upscale_digit(image8: np.ndarray) -> np.ndarray:
    """An 8x8 0..16 scikit-learn digit -> uint8 28x28 0..255, MNIST-like."""
    from PIL import Image

    scaled = np.clip(np.asarray(image8, dtype=np.float64) * (255.0 / 16.0), 0, 255).astype(np.uint8)
    box = Image.fromarray(scaled, mode="L").resize((DIGIT_BOX, DIGIT_BOX), Image.BICUBIC)
    out = np.zeros((features.IMAGE_HEIGHT, features.IMAGE_WIDTH), dtype=np.uint8)
    border = (features.IMAGE_HEIGHT - DIGIT_BOX) // 2
    out[border : border + DIGIT_BOX, border : border + DIGIT_BOX] = np.asarray(box)
    return out


def embedded_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``make run`` writes them: uint8 [n, 28, 28] and int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.stack([upscale_digit(image8) for image8 in digits.images])
    return images, digits.target.astype(np.int64)


def _is_complete(dest: Path) -> bool:
    marker = dest / COMPLETE_MARKER
    return marker.is_file() and marker.read_text().strip() == str(DIGITS_COUNT)


def materialize_digits(dest: str = "data/digits") -> str:
    """Write scikit-learn's digits as ``<dest>/<label>/<n>.png`` once; return ``dest``.

    Idempotent (a complete folder is reused) and atomic (written to a temporary sibling folder
    and renamed), so an interrupted run never leaves half a dataset behind.
    """
    from PIL import Image

    target = Path(dest)
    if _is_complete(target):
        return str(target)
    if target.exists() and any(target.iterdir()):
        raise DataError(
            f"{target}: exists but is not a complete digits export; remove it and run again"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        images, labels = embedded_digits()
        for n, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = tmp / str(int(label))
            folder.mkdir(exist_ok=True)
            Image.fromarray(image, mode="L").save(folder / f"{n}.png")
        (tmp / COMPLETE_MARKER).write_text(f"{len(labels)}\n")
        if target.exists():
            target.rmdir()  # empty (checked above)
        os.rename(tmp, target)
    except OSError:
        if not _is_complete(target):  # not a concurrent writer winning the rename
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def fashion_mnist_dir() -> str:
    """Debian's Fashion-MNIST IDX folder; DataError with the install command if it is missing."""
    folder = Path(FASHION_MNIST_DIR)
    if not all((folder / name).is_file() for name in FASHION_MNIST_FILES):
        raise DataError(
            f"{folder}: Fashion-MNIST is not installed; install it with "
            "`sudo apt-get install dataset-fashion-mnist` (or pass --data with your own copy)"
        )
    return str(folder)


def resolve_data(
    data: str | None,
    dataset: str | None,
    data_root: str = "data",
    class_names: Sequence[str] | None = None,
    eval_percent: int = 20,
) -> ResolvedData:
    """The input folder and class names for ``--data`` / ``--dataset`` (default: digits).

    Class names, first match wins: ``class_names``; a ``dict.tsv`` inside ``--data``; the
    dataset's own names (Fashion-MNIST's when ``dataset`` is ``fashion-mnist``); what the data
    imply (label folder names in sorted order, or zero..N-1 for index folders and IDX labels);
    zero..nine.

    The input's layout is detected here, once per run before Beam (``eval_percent``: the split
    the run will use), and travels in the result to ExampleGen; its executor checks it again.
    """
    if dataset is not None and dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    from pipeline.components.image_example_gen import detect_layout

    if data:
        layout = detect_layout(data, class_names=class_names, eval_percent=eval_percent)
        dataset_names = features.FASHION_MNIST_CLASS_NAMES if dataset == "fashion-mnist" else None
        names = tuple(class_names or layout.class_names or dataset_names or layout.label_names
                      or features.DIGIT_CLASS_NAMES)
        return ResolvedData(layout.root, names, f"{layout.kind} input at {layout.root}",
                            layout, eval_percent)
    if dataset == "fashion-mnist":
        path = fashion_mnist_dir()
        names = tuple(class_names or features.FASHION_MNIST_CLASS_NAMES)
        description = f"Fashion-MNIST (Debian dataset-fashion-mnist, {FASHION_MNIST_DIR})"
    else:
        path = str(Path(materialize_digits(str(Path(data_root) / "digits"))).resolve())
        names = tuple(class_names or features.DIGIT_CLASS_NAMES)
        description = (f"scikit-learn digits ({DIGITS_COUNT} images, 8x8 upscaled to 28x28) "
                       f"in {path}")
    layout = detect_layout(path, class_names=names, eval_percent=eval_percent)
    return ResolvedData(path, names, description, layout, eval_percent)
