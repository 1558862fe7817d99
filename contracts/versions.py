"""The serving layout: ``<serving_dir>/<name>/<N>/`` with integer versions counting up from 1.

A version directory appears whole (written under a dot-prefixed name in the same parent, then
renamed); non-numeric and dot-prefixed entries are never versions.
"""

from __future__ import annotations

import os
from collections.abc import Iterable


def version_dirs(parent: str) -> dict[int, str]:
    """``{N: path}`` of the integer-named version directories of ``parent`` (missing -> {})."""
    try:
        names = os.listdir(parent)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {int(n): os.path.join(parent, n) for n in names
            if n.isdigit() and os.path.isdir(os.path.join(parent, n))}


def versions(parent: str) -> list[int]:
    """The integer versions under ``parent``, ascending."""
    return sorted(version_dirs(parent))


def next_version(parent: str, taken: Iterable[int] = ()) -> int:
    """The version a new push or deploy gets: one more than the highest directory or ``taken``
    version (recorded elsewhere, even if its directory is gone), else 1."""
    return max([*versions(parent), *taken], default=0) + 1
