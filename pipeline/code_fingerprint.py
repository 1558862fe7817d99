"""Content hashes of the user code, so that editing it re-runs the components that use it.

The graph names its user functions by import path (``modules.trainer.run_fn``), and TFX's cache
key holds exec properties, not the code behind such a path: without this, editing
``modules/model.py`` and running again returned the cached Trainer output. The hash goes into the
components' ``custom_config``, which is part of the key. (TFX's own ``module_file=`` route does
the same by packaging a directory into a content-named wheel, but imports the files as top-level
modules, which our ``modules`` package is not written for.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

MODULES_DIR = Path(__file__).resolve().parents[1] / "modules"

# What tf.Transform's preprocessing_fn runs; everything else in modules/ is the Trainer's.
TRANSFORM_FILES = ("__init__.py", "features.py", "preprocessing.py")


def code_fingerprint(files: tuple[str, ...] | None = None, root: Path = MODULES_DIR) -> str:
    """sha256 (first 16 hex digits) over the named files of ``root``, or all its ``*.py``."""
    paths = sorted(root.glob("*.py")) if files is None else [root / name for name in files]
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
