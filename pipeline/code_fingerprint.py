"""Content hashes of the user code, so that editing it re-runs the components that use it.

The graph names its user functions by import path (``modules.trainer.run_fn``), and TFX's cache
key holds exec properties, not the code behind such a path: without this, editing
``modules/model.py`` and running again returned the cached Trainer output. The hash goes into the
components' ``custom_config``, which is part of the key. (TFX's own ``module_file=`` route does
the same by packaging a directory into a content-named wheel, but imports the files as top-level
modules, which our ``modules`` package is not written for.)
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

MODULES_DIR = Path(__file__).resolve().parents[1] / "modules"

# What tf.Transform's preprocessing_fn runs; everything else in modules/ is the Trainer's.
TRANSFORM_FILES = ("__init__.py", "features.py", "preprocessing.py")


def _imported_contracts(path: Path, contracts_dir: Path) -> set[Path]:
    """The ``contracts/*.py`` files that ``path`` imports (``contracts.x`` or ``from contracts
    import x``), existing ones only."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_bytes())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] != "contracts":
                continue
            found.add(contracts_dir / "__init__.py")
            if len(parts) > 1:
                found.add(contracts_dir / f"{parts[1]}.py")
    return {p for p in found if p.is_file()}


def _with_contracts(paths: list[Path], contracts_dir: Path) -> list[Path]:
    """``paths`` plus every contracts file they import, transitively."""
    seen, todo = set(paths), list(paths)
    while todo:
        for extra in _imported_contracts(todo.pop(), contracts_dir) - seen:
            seen.add(extra)
            todo.append(extra)
    return sorted(seen, key=lambda p: (p.parent.name, p.name))


def code_fingerprint(files: tuple[str, ...] | None = None, root: Path = MODULES_DIR) -> str:
    """sha256 (first 16 hex digits) over the named files of ``root``, or all its ``*.py``, and
    the ``contracts/`` files (beside ``root``) that they import."""
    paths = sorted(root.glob("*.py")) if files is None else [root / name for name in files]
    digest = hashlib.sha256()
    for path in _with_contracts(paths, root.parent / "contracts"):
        label = f"{path.parent.name}/{path.name}"
        digest.update(label.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
