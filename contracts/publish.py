"""One way to publish a version directory: ``<parent>/<N>/`` appears whole or not at all.

Both writers of the serving layout use it, the pipeline's Pusher and ``mlmodel deploy``:

1. ``stage_copy``: copy the model into ``<parent>/.tmp-<host>-<pid>-<rand>`` (dot-prefixed: never
   a version, never served), outside any lock;
2. under the caller's lock, ``publish``: rename the staging directory to the next version
   (``contracts.versions.next_version``: one more than every directory and every recorded version).

A killed writer leaves at most a staging directory whose name says which host and process made
it, so ``stale_staging`` (and ``mlmodel doctor``) can tell debris from a copy still in progress.
Standard library only: the pipeline and the registry both stand on it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from collections.abc import Iterable

from contracts.versions import next_version

STAGING_PREFIX = ".tmp-"
LEGACY_PUSH_PREFIX = ".push-"  # the Pusher's staging before it published through this module


def _host() -> str:
    return socket.gethostname().replace("-", "_")


def staging_dir(parent: str) -> str:
    """A new dot-prefixed staging directory name in ``parent`` that records host and pid."""
    return os.path.join(parent, f"{STAGING_PREFIX}{_host()}-{os.getpid()}-{secrets.token_hex(4)}")


def stage_copy(source: str, parent: str) -> str:
    """Copy directory ``source`` into a fresh staging directory under ``parent``; its path.

    A failed or interrupted copy removes what it wrote.
    """
    if not os.path.isdir(source):
        raise FileNotFoundError(f"model directory {source} does not exist")
    os.makedirs(parent, exist_ok=True)
    staging = staging_dir(parent)
    try:
        shutil.copytree(source, staging, symlinks=False)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def publish(staging: str, parent: str, taken: Iterable[int] = ()) -> tuple[int, str]:
    """Rename ``staging`` to ``<parent>/<N>`` with N from ``next_version``; (N, path).

    Call it holding the lock that serialises writers of ``parent``; ``taken`` are versions that
    are recorded elsewhere (a registry) even if their directory is gone.
    """
    version = next_version(parent, taken)
    target = os.path.join(parent, str(version))
    os.rename(staging, target)
    return version, target


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_staging(parent: str) -> list[str]:
    """Staging directories in ``parent`` whose writer is gone: made on this host by a process
    that no longer runs, or by a Pusher of before this module (``.push-*``, no owner recorded)."""
    host = _host()
    stale = []
    try:
        names = sorted(os.listdir(parent))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for name in names:
        path = os.path.join(parent, name)
        if name.startswith(LEGACY_PUSH_PREFIX) and os.path.isdir(path):
            stale.append(path)
            continue
        if not name.startswith(STAGING_PREFIX):
            continue
        parts = name[len(STAGING_PREFIX):].split("-")
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        if not pid_alive(int(parts[1])):
            stale.append(path)
    return stale
