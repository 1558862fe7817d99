"""Where the manager learns what to serve.

* ``registry_source``: the registry's ``serving_snapshot()`` (deploy, stop, rollback, labels),
  re-read only when the registry's change marker moved (an idle poll is one MLMD query).
* ``directory_source``: TF Serving's own rule on a bare ``serving_model/`` tree (every
  ``<name>/<N>`` with integer N; the highest is the latest; dot-prefixed and non-numeric entries
  are ignored). Used when there is no registry, e.g. for the Pusher's output alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from contracts.settings import default_serving_dir
from contracts.versions import version_dirs
from serving.manager import DeployedVersionLike, Source


@dataclass(frozen=True)
class DirectoryVersion:
    serving_name: str
    model_name: str
    version: int
    path: str
    labels: tuple[str, ...] = ()
    serving: bool = True
    current: bool = False
    deployed_at: float = 0.0


@dataclass(frozen=True)
class MissingVersion(DirectoryVersion):
    """A version the registry lists whose directory is gone: the manager reports it (END,
    NOT_FOUND) and, for the current version, falls back to the newest remaining one."""

    missing: bool = True

    @classmethod
    def of(cls, v: DeployedVersionLike) -> MissingVersion:
        return cls(v.serving_name, getattr(v, "model_name", v.serving_name), v.version, v.path,
                   v.labels, v.serving, v.current, v.deployed_at)


def resolve_serving_dir(serving_dir: str | None) -> str:
    """``serving_dir``, else $MNIST_TFX_SERVING_DIR, else ``serving_model``; absolute."""
    return os.path.abspath(serving_dir or default_serving_dir())


def directory_source(serving_dir: str | None = None) -> Source:
    root = resolve_serving_dir(serving_dir)

    def snapshot() -> Sequence[DeployedVersionLike]:
        found: list[DirectoryVersion] = []
        if not os.path.isdir(root):
            return found
        for name in sorted(os.listdir(root)):
            model_dir = os.path.join(root, name)
            if name.startswith(".") or not os.path.isdir(model_dir):
                continue
            paths = version_dirs(model_dir)
            versions = sorted(paths)
            for v in versions:
                path = paths[v]
                found.append(DirectoryVersion(name, name, v, path, current=(v == versions[-1]),
                                              deployed_at=os.stat(path).st_mtime))
        return found

    return snapshot


def registry_source(metadata: str | None = None, serving_dir: str | None = None) -> Source:
    """The registry's deployments; raises ImportError when the registry package is missing."""
    from registry.api import open_registry  # the registry owns MLMD; we only read its snapshot

    registry = open_registry(metadata=metadata, serving_dir=serving_dir)
    cache: dict[str, object] = {"marker": None, "versions": []}

    def snapshot() -> Sequence[DeployedVersionLike]:
        """An idle poll costs one MLMD query (the newest registry action) and a stat per version.

        The deployments are re-read only when a registry write has happened since the last poll
        (every write records one ``mlmodel.Action``); the marker is read before the snapshot, so
        a write that lands in between is seen again at the next poll.
        """
        marker = registry.change_marker()
        if marker is None or marker != cache["marker"]:
            cache["versions"] = registry.serving_snapshot(check_dirs=False)
            cache["marker"] = marker
        versions: list[DeployedVersionLike] = cache["versions"]  # type: ignore[assignment]
        return [v if os.path.isdir(v.path) else MissingVersion.of(v) for v in versions]

    return snapshot
