"""Serving directory operations: whole-or-nothing version directories and crash reconciliation.

A deploy copies the model into ``<serving_dir>/<serving_name>/.tmp-<host>-<pid>-<rand>`` (outside
the lock), then, under the registry lock, renames it to ``<N>`` and only then records it in MLMD;
staging, numbering and the rename are ``contracts.publish``'s, shared with the pipeline's Pusher.
A crash leaves at most a dot-prefixed staging directory (never served) or a numbered directory
with no record; the next writer removes both (``reconcile``), and readers never serve a directory
without a record.
"""

from __future__ import annotations

import os
import secrets
import shutil

from contracts import publish
from contracts.versions import version_dirs
from metastore.errors import InputError

TMP_PREFIX = publish.STAGING_PREFIX
CRASH_ENV = "MLMODEL_TEST_CRASH_AT"  # tests: "<step>" or "<step>:pause" (see crash_point)


def crash_point(step: str) -> None:
    """Test hook: exit hard (or block on stdin) at a named step when $MLMODEL_TEST_CRASH_AT says so."""
    wanted = os.environ.get(CRASH_ENV, "")
    if not wanted:
        return
    name, _, mode = wanted.partition(":")
    if name != step:
        return
    if mode == "pause":
        print(f"PAUSED {step}", flush=True)
        os.read(0, 1)  # the test kills us while we wait here
    os._exit(97)


def copy_model(source: str, parent: str) -> str:
    """Copy directory ``source`` into a fresh staging dir under ``parent``; returns its path."""
    if not os.path.isdir(source):
        raise InputError(f"model directory {source} does not exist; was it deleted? "
                         "re-run the pipeline or re-import the model")
    return publish.stage_copy(source, parent)


def remove_tree(path: str) -> None:
    """Remove ``path`` so it disappears at once: rename to a dot name, then delete."""
    if not os.path.lexists(path):
        return
    parent, base = os.path.split(path.rstrip("/"))
    doomed = os.path.join(parent, f".deleting-{base}-{secrets.token_hex(4)}")
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def reconcile(parent: str, recorded: set[int]) -> list[str]:
    """Remove dead staging dirs and version dirs with no record. Call with the write lock held."""
    removed = []
    for path in publish.stale_staging(parent):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    for version, path in version_dirs(parent).items():
        if version not in recorded:
            remove_tree(path)
            removed.append(path)
    return removed
