"""A cached index of ``mlmodel list``'s rows, refreshed by what changed since it was written.

Listing models means reading every model's contexts and newest ``Model`` artifact: about 0.1 s
per 1,000 models on SQLite, so a registry of 10,000 models would take a second for one page. The
index keeps every row (a few hundred bytes each) in a JSON file and remembers three markers, the
newest record of each kind that can change a row:

* the newest ``mlmodel.Action`` (every registry write records exactly one, under the write lock:
  deploy, stop, rollback, label, import, delete);
* the newest pipeline context (a pipeline run of a new model);
* the newest ``Model`` artifact (a pipeline run of a known model: its owner, times, algorithm).

The markers are the newest execution, context and artifact of *any* type (one-row queries
without a filter: MLMD's type filters scan, 30 ms at 10,000 models, where these take a fraction of
a millisecond), so any write moves one of them. A read compares them with the index's. Equal: the
rows are current. Moved: the records written since name the models they touched (``model_name`` of the
actions and Model artifacts, the new contexts' names), and only those rows are read again. The
markers are read *before* the rows, so a write that lands during a refresh moves them again and
the next read catches it. Markers carry creation times too, so a recreated database with the same
ids is not mistaken for the old one.

Where: beside a SQLite database (``<db>.list-index.json``, next to its ``.lock``), or under the
user's cache directory for MySQL. Writes are atomic (temporary file, then rename); an unreadable,
foreign or corrupt index is ignored and rebuilt; a read-only place only costs the speed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

import orjson
from ml_metadata.metadata_store import metadata_store

from metastore import pipeline_models
from metastore.store import REGISTRY_ACTION, Backend, Store, prop

FORMAT = 1
MAX_TOUCHED = 200  # more changed models than this since the index: rebuild it whole
Marker = tuple[int, int]  # (id, create_time_since_epoch in ms) of the newest record; (0, 0): none


def index_path(backend: Backend) -> str:
    """Where the index of ``backend`` lives."""
    if backend.kind == "sqlite":
        return backend.path + ".list-index.json"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(backend.display.encode()).hexdigest()[:16]
    return os.path.join(base, "mnist-tfx", f"list-index-{digest}.json")


def newest(store: Store, kind: str) -> Marker:
    """(id, create time) of the newest execution/context/artifact of any type: one row."""
    options = metadata_store.ListOptions(limit=1, is_asc=False,
                                         order_by=metadata_store.OrderByField.ID)
    found = store.listed(kind, options, "reading the registry's newest records")
    return (int(found[0].id), int(found[0].create_time_since_epoch)) if found else (0, 0)


def read_markers(store: Store) -> tuple[Marker, Marker, Marker]:
    """The newest execution (registry Actions among them), context (pipelines) and artifact
    (Models): three one-row queries."""
    return newest(store, "execution"), newest(store, "context"), newest(store, "artifact")


def _since(store: Store, kind: str, type_name: str, after: int) -> list[Any] | None:
    """Records of ``type_name`` with id > ``after``; None when there are too many to patch."""
    options = metadata_store.ListOptions(
        filter_query=f"type = '{type_name}' AND id > {after}", limit=MAX_TOUCHED + 1,
        order_by=metadata_store.OrderByField.ID, is_asc=True)
    found = store.listed(kind, options, "reading the registry's changes")
    return None if len(found) > MAX_TOUCHED else found


def touched_names(store: Store, old: tuple[Marker, ...], new: tuple[Marker, ...]) -> set[str] | None:
    """Names of the models whose rows may differ between ``old`` and ``new`` markers.

    None when the index cannot be patched: the database was recreated (a marker went back or its
    record changed), or too many models changed.
    """
    for before, after in zip(old, new, strict=True):
        if after[0] < before[0] or (after[0] == before[0] and after != before):
            return None
    names: set[str] = set()
    actions = _since(store, "execution", REGISTRY_ACTION, old[0][0])
    contexts = _since(store, "context", pipeline_models.PIPELINE_CONTEXT, old[1][0])
    models = _since(store, "artifact", "Model", old[2][0])
    if actions is None or contexts is None or models is None:
        return None
    names.update(str(prop(a, "model_name", "") or "") for a in actions)
    names.update(c.name for c in contexts)
    unnamed = []
    for artifact in models:
        name = str(prop(artifact, "model_name", "") or "")
        if name:
            names.add(name)
        else:  # another pipeline's Trainer: its pipeline context names the model
            unnamed.append(artifact.id)
    for artifact_id in unnamed:
        found = store.read(lambda m, i=artifact_id: m.get_contexts_by_artifact(i),
                           "reading a model's pipeline")
        names.update(c.name for c in found if c.type == pipeline_models.PIPELINE_CONTEXT)
    names.discard("")
    if len(names) > MAX_TOUCHED:
        return None
    return names


def identity(backend: Backend) -> str:
    """What the index is for: the backend, and for SQLite the database file's inode (a deleted
    and recreated database is another one, even at the same path)."""
    if backend.kind == "sqlite":
        try:
            return f"{backend.display}#{os.stat(backend.path).st_ino}"
        except OSError:
            return backend.display
    return backend.display


@dataclasses.dataclass
class ListIndex:
    """The rows of every visible model, as of ``markers``."""

    backend: str
    markers: tuple[Marker, ...]
    rows: list[dict[str, Any]]


def load(path: str, backend: Backend) -> ListIndex | None:
    """The index at ``path`` if it is readable and for this backend, else None."""
    try:
        with open(path, "rb") as fh:
            data = orjson.loads(fh.read())
        if data.get("format") != FORMAT or data.get("backend") != identity(backend):
            return None
        markers = tuple((int(i), int(t)) for i, t in data["markers"])
        return ListIndex(data["backend"], markers, list(data["rows"]))
    except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        return None


def save(path: str, index: ListIndex) -> None:
    """Write the index atomically; a place we cannot write to is skipped (reads stay correct)."""
    data = {"format": FORMAT, "backend": index.backend,
            "markers": [list(m) for m in index.markers], "rows": index.rows}
    directory = os.path.dirname(path) or "."
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        import tempfile  # only when the index is written: not on every read

        fd, tmp = tempfile.mkstemp(prefix=".list-index-", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"))
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def patched(rows: Iterable[dict[str, Any]], fresh: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """``rows`` with the rows of ``fresh``'s names replaced (None: the model is gone)."""
    by_name = {row["name"]: row for row in rows}
    for name, row in fresh.items():
        if row is None:
            by_name.pop(name, None)
        else:
            by_name[name] = row
    return sorted(by_name.values(), key=lambda r: r["id"])
