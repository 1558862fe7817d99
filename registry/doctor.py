"""``mlmodel doctor``: what killed writes left on disk, and (with ``--repair``) its removal.

Every registry write cleans up after itself, and the next write under the lock removes what a
killed one left in the directories it touches (``files.reconcile``, ``archive.remove_stale_staging``).
A registry that is only read, or whose killed write was the last one, keeps that debris: this
command finds it everywhere under the serving directory.

Findings, and what ``--repair`` does (under the registry's write lock):

* ``staging``: a ``.tmp-<host>-<pid>-*`` directory of a deploy, import or pipeline push whose
  process is gone (on this host), or a ``.push-*`` one of an older Pusher (``contracts.publish``)
  -> removed;
* ``half-deleted``: a ``.deleting-*`` directory a killed delete was removing -> removed;
* ``unrecorded version``: ``<serving_name>/<N>`` of a model the registry serves, with no
  deployment record (a deploy killed between the rename and the record; never served) -> removed;
* ``missing files``: a recorded deployment whose directory is gone -> not removed (the record is
  the history); the detail says how to serve the model again.

Directories the registry does not own (other serving names, files a user put there for
``serving start --source directory``) are never touched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from contracts import publish
from contracts.versions import version_dirs
from registry import files
from registry.api import Registry

DELETING_PREFIX = ".deleting-"


@dataclass(frozen=True)
class Finding:
    kind: str  # staging | half-deleted | unrecorded version | missing files
    path: str
    detail: str
    removable: bool


def _subdirs(parent: str) -> list[str]:
    try:
        return sorted(e.path for e in os.scandir(parent) if e.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _debris(parent: str, what: str) -> list[Finding]:
    found = [Finding("staging", path, f"{what} staging of a process that is gone", True)
             for path in publish.stale_staging(parent)]
    found += [Finding("half-deleted", path, "a delete was killed while removing it", True)
              for path in _subdirs(parent)
              if os.path.basename(path).startswith(DELETING_PREFIX)]
    return found


def diagnose(reg: Registry) -> list[Finding]:
    """Everything killed writes left under ``reg.serving_dir``, and records without files."""
    snapshot = reg.serving_snapshot(check_dirs=False)
    recorded: dict[str, set[int]] = {}
    for version in snapshot:
        recorded.setdefault(version.serving_name, set()).add(version.version)
    findings = _debris(reg.serving_dir, "deploy")
    for parent in _subdirs(reg.serving_dir):
        name = os.path.basename(parent)
        if name.startswith("."):
            continue
        findings += _debris(parent, "deploy or push")
        if name in recorded:
            findings += [
                Finding("unrecorded version", path,
                        f"version {version} of {name} has no deployment record; never served", True)
                for version, path in sorted(version_dirs(parent).items())
                if version not in recorded[name]]
    managed = os.path.join(reg.serving_dir, ".registry", "models")
    findings += _debris(managed, "import")
    for parent in _subdirs(managed):
        findings += _debris(parent, "import")
    for version in snapshot:
        if not os.path.isdir(version.path):
            findings.append(Finding(
                "missing files", version.path,
                f"deployed version {version.version} of {version.model_name} has no files; "
                f"`mlmodel deploy {version.model_name}` serves it again as a new version, or "
                f"`mlmodel rollback {version.model_name} --version N` picks another", False))
    return findings


def repair(reg: Registry) -> list[Finding]:
    """Remove what ``diagnose`` finds removable, under the write lock; returns what was removed.

    Diagnosing again under the lock means a deploy that finished meanwhile is not mistaken for
    debris.
    """
    removed = []
    reg.serving_snapshot(check_dirs=False)  # connects: is there a database at all?
    # Without a database there is nothing to record; take the lock without creating one.
    lock = reg.store._raw_lock if reg.store.missing_database else reg.store.lock
    with lock.hold():
        for finding in diagnose(reg):
            if finding.removable and os.path.isdir(finding.path):
                files.remove_tree(finding.path)
                removed.append(finding)
    return removed
