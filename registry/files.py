"""Serving directory operations: whole-or-nothing version directories and crash reconciliation.

A deploy copies the model into ``<serving_dir>/<serving_name>/.tmp-<host>-<pid>-<rand>`` (outside
the lock), then, under the registry lock, renames it to ``<N>`` and only then records it in MLMD.
A crash leaves at most a dot-prefixed staging directory (never served) or a numbered directory
with no record; the next writer removes both (``reconcile``), and readers never serve a directory
without a record.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket

from contracts.versions import version_dirs
from metastore.errors import InputError

TMP_PREFIX = ".tmp-"
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


def staging_dir(parent: str) -> str:
    """A new dot-prefixed staging directory name in ``parent`` that records host and pid."""
    host = socket.gethostname().replace("-", "_")
    return os.path.join(parent, f"{TMP_PREFIX}{host}-{os.getpid()}-{secrets.token_hex(4)}")


def copy_model(source: str, parent: str) -> str:
    """Copy directory ``source`` into a fresh staging dir under ``parent``; returns its path."""
    if not os.path.isdir(source):
        raise InputError(f"model directory {source} does not exist; was it deleted? "
                         "re-run the pipeline or re-import the model")
    os.makedirs(parent, exist_ok=True)
    staging = staging_dir(parent)
    try:
        shutil.copytree(source, staging, symlinks=False)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_staging(parent: str) -> list[str]:
    """Staging dirs in ``parent`` left by dead processes on this host."""
    host = socket.gethostname().replace("-", "_")
    stale = []
    try:
        names = os.listdir(parent)
    except FileNotFoundError:
        return []
    for name in names:
        if not name.startswith(TMP_PREFIX):
            continue
        parts = name[len(TMP_PREFIX):].split("-")
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        if not _pid_alive(int(parts[1])):
            stale.append(os.path.join(parent, name))
    return stale


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
    for path in stale_staging(parent):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    for version, path in version_dirs(parent).items():
        if version not in recorded:
            remove_tree(path)
            removed.append(path)
    return removed
