"""The model manager: follows a source of deployments and keeps the right versions loaded.

No HTTP here: the REST app, a later gRPC front end and the dashboard all call the same manager.

* A *source* is a callable returning the deployed versions (``registry.api`` ``DeployedVersion``
  objects, or anything with the same attributes). ``ModelManager.start()`` polls it in a thread
  every ``poll_interval`` seconds, so deploy, stop, rollback and label moves are followed without
  a restart; ``sync()`` runs one poll step (tests call it directly).
* New versions are loaded *before* anything is unloaded, and the routing table (latest version and
  labels per model) is swapped in one assignment after the loads, so a request sees either the old
  table or the new one. A request that already holds a servable finishes on it.
* A version that fails to load is reported as ``END`` with its error, and the version that served
  before keeps serving (even if the registry has stopped it) until a replacement loads.
* A deployed version whose directory is gone (deleted while serving) is reported as ``END`` with
  ``NOT_FOUND`` and a message naming the directory and the fallback; when it was the current
  version, unlabelled requests go to the newest remaining version the source still lists (below
  it when there is one: a rolled-back newer version is not preferred), not the oldest labelled.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from contracts.signatures import SAVED_MODEL_FILE
from serving.errors import ServingError, invalid, not_found, unavailable
from serving.servable import Servable

log = logging.getLogger("serving.manager")

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


class DeployedVersionLike(Protocol):
    """What the manager reads from a source (``registry.api.DeployedVersion`` fits). A source
    may add ``missing = True`` to a listed version whose directory is gone."""

    @property
    def serving_name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def path(self) -> str: ...
    @property
    def labels(self) -> tuple[str, ...]: ...
    @property
    def serving(self) -> bool: ...
    @property
    def current(self) -> bool: ...
    @property
    def deployed_at(self) -> float: ...


Source = Callable[[], Sequence[DeployedVersionLike]]
Loader = Callable[[str, int, str], Servable]


@dataclass(frozen=True)
class VersionStatus:
    """TF Serving's ModelVersionStatus, plus where it came from."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""
    path: str = ""
    labels: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "version": str(self.version),
            "state": self.state,
            "status": {"error_code": self.error_code, "error_message": self.error_message},
        }


@dataclass(frozen=True)
class ModelRoutes:
    """One model's routing: loaded servables, the latest version, labels, statuses."""

    name: str
    servables: dict[int, Servable] = field(default_factory=dict)
    latest: int | None = None
    labels: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, VersionStatus] = field(default_factory=dict)


@dataclass
class _Attempt:
    key: tuple[str, float, float]  # (path, deployed_at, mtime of saved_model.pb)
    error: ServingError | None


def _dir_key(path: str, deployed_at: float) -> tuple[str, float, float]:
    try:
        mtime = os.stat(os.path.join(path, SAVED_MODEL_FILE)).st_mtime
    except OSError:
        mtime = -1.0
    return (path, float(deployed_at), mtime)


SETTLE_AFTER_S = 5.0  # after a load/unload: the full settle, once requests let go of the old


def freeze_loaded() -> None:
    """Collect what is not frozen yet, then freeze the survivors: a newly loaded version.

    Called after a load and before the version is routed, so its objects are out of the
    collector's sight when requests arrive. It walks only the objects allocated since the last
    freeze (6 ms after our model's load here, against 115-135 ms for ``settle_heap``'s whole
    heap), so it does not push the model's weights and code out of the CPU caches just before
    its first request (``benchmarks/warmup_bench.py``).
    """
    gc.collect()
    gc.freeze()


def settle_heap() -> None:
    """Collect garbage, then move every surviving object out of the collector's sight.

    A loaded TensorFlow model is hundreds of thousands of tracked Python objects. Requests
    allocate containers (the parsed JSON), so the cyclic collector runs often, and every tenth
    generation-1 pass a full collection walked the whole model: 100-200 ms with the GIL held,
    about 2 ms per request on average under load and the p99 outliers. Frozen objects are
    skipped by every collection. ``gc.unfreeze()`` first, so that the cycles of a version
    unloaded since the last call are collected rather than kept frozen forever. The manager
    runs it ``SETTLE_AFTER_S`` after a change, not at once: right after a deploy it held the
    GIL and cooled the caches as the new version's first request came in (that request took
    1.7-1.8x the steady p50 with the warm-up file, 1.2-1.4x with no settle at all).
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@dataclass(frozen=True)
class _Fallback:
    """A listed version promoted to current because the current one's directory is gone."""

    serving_name: str
    version: int
    path: str
    labels: tuple[str, ...]
    serving: bool = True
    current: bool = True
    deployed_at: float = 0.0


def wanted_path(deployed: Sequence[DeployedVersionLike], version: int) -> str:
    return next((dv.path for dv in deployed if dv.version == version), "")


def _present(deployed: Sequence[DeployedVersionLike]
             ) -> tuple[dict[int, DeployedVersionLike], dict[int, str]]:
    """(versions to serve, {version whose directory is gone: why}). When the current version's
    directory is gone, the newest remaining listed version (below it if any) becomes current."""
    on_disk = {dv.version: dv for dv in deployed if not getattr(dv, "missing", False)}
    wanted: dict[int, DeployedVersionLike] = {v: dv for v, dv in on_disk.items() if dv.serving}
    gone = [dv for dv in deployed if dv.serving and dv.version not in on_disk]
    missing: dict[int, str] = {}
    for dv in gone:
        missing[dv.version] = f"the version directory {dv.path} is missing (deleted?)"
        if not dv.current:
            continue
        below = [v for v in on_disk if v < dv.version]
        fallback = max(below or on_disk, default=None)
        if fallback is None:
            missing[dv.version] += "; no other version of the model is on disk to serve"
            continue
        fb = on_disk[fallback]
        wanted[fallback] = _Fallback(fb.serving_name, fb.version, fb.path, fb.labels,
                                     deployed_at=fb.deployed_at)
        missing[dv.version] += (f"; unlabelled requests go to version {fallback}, the newest "
                                "remaining one (redeploy or roll back to fix)")
    return wanted, missing


class ModelManager:
    def __init__(
        self,
        source: Source,
        loader: Loader,
        poll_interval: float = 0.5,
        on_change: Callable[[str, int, str], None] | None = None,
        freeze_heap: bool = False,
    ) -> None:
        self._source = source
        self._loader = loader
        self._poll_interval = poll_interval
        self._on_change = on_change
        self._routes: dict[str, ModelRoutes] = {}  # replaced whole, never mutated
        self._attempts: dict[tuple[str, int], _Attempt] = {}
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.synced = threading.Event()  # set after the first successful sync
        self.last_error: str = ""
        self._freeze_heap = freeze_heap
        self._changes = 0  # load/unload events so far; the poll loop settles the heap after one

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll_loop, name="model-manager", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self._routes = {}
        if self._freeze_heap:
            gc.unfreeze()

    def _poll_loop(self) -> None:
        seen = self._changes
        settle_at: float | None = None
        told_empty = False
        while not self._stop.is_set():
            self.sync()
            if not self._routes and not told_empty and self.synced.is_set():
                told_empty = True
                log.info("no model is deployed yet; waiting for one (`mlmodel deploy NAME`, or "
                         "`serving start --source directory` to serve the Pusher's output)")
            if self._freeze_heap:
                if self._changes != seen:  # loads froze themselves (freeze_loaded); unloads
                    seen = self._changes   # wait until requests have let go of them
                    settle_at = time.monotonic() + SETTLE_AFTER_S
                elif settle_at is not None and time.monotonic() >= settle_at:
                    settle_heap()
                    settle_at = None
            self._stop.wait(self._poll_interval)

    # -- one poll step ---------------------------------------------------------------------
    def sync(self) -> None:
        """Read the source once and load/unload/relabel to match it."""
        with self._sync_lock:
            try:
                deployed = list(self._source())
            except Exception as exc:  # noqa: BLE001 - keep serving what we have
                self.last_error = f"could not read the deployments: {exc}"
                log.warning("%s; serving the last known state", self.last_error)
                return
            self.last_error = ""
            by_model: dict[str, list[DeployedVersionLike]] = {}
            for dv in deployed:
                by_model.setdefault(dv.serving_name, []).append(dv)
            for name in set(self._routes) - set(by_model):
                by_model[name] = []
            for name in sorted(by_model):
                self._sync_model(name, by_model[name])
            self.synced.set()

    def _publish(self, routes: ModelRoutes) -> None:
        table = dict(self._routes)
        if routes.servables or routes.statuses:
            table[routes.name] = routes
        else:
            table.pop(routes.name, None)
        self._routes = table

    def _event(self, name: str, version: int, state: str) -> None:
        self._changes += 1
        log.info("model %s version %d: %s", name, version, state)
        if self._on_change is not None:
            self._on_change(name, version, state)

    def _sync_model(self, name: str, deployed: list[DeployedVersionLike]) -> None:
        old = self._routes.get(name, ModelRoutes(name))
        wanted, missing = _present(deployed)
        servables = dict(old.servables)
        statuses = dict(old.statuses)

        # 1. load what is wanted and not loaded (old routes stay published meanwhile)
        for version in sorted(wanted):
            dv = wanted[version]
            loaded = servables.get(version)
            if loaded is not None and loaded.path == dv.path:
                continue
            key = _dir_key(dv.path, dv.deployed_at)
            attempt = self._attempts.get((name, version))
            if attempt is not None and attempt.key == key:
                continue  # already tried this exact directory
            statuses[version] = VersionStatus(version, LOADING, path=dv.path, labels=dv.labels)
            self._publish(replace(old, statuses=dict(statuses)))
            self._event(name, version, LOADING)
            try:
                servable = self._loader(name, version, dv.path)
            except Exception as exc:  # noqa: BLE001 - reported in status; others keep serving
                error = exc if isinstance(exc, ServingError) else ServingError(
                    "INTERNAL", f"{type(exc).__name__}: {exc}")
                self._attempts[(name, version)] = _Attempt(key, error)
                statuses[version] = VersionStatus(
                    version, END, error.code, error.message, dv.path, dv.labels)
                self._event(name, version, END)
                log.warning("model %s version %d failed to load: %s", name, version, error)
                continue
            self._attempts[(name, version)] = _Attempt(key, None)
            if self._freeze_heap:
                freeze_loaded()  # before it is routed: its first request meets a settled heap
            servables[version] = servable
            statuses[version] = VersionStatus(version, AVAILABLE, path=dv.path, labels=dv.labels)
            self._event(name, version, AVAILABLE)

        # 2. route: the registry's current version when it loaded, else keep what served before
        available = {v for v in servables if v in wanted}
        current = [v for v, dv in wanted.items() if dv.current]
        latest: int | None
        if current and current[0] in available:
            latest = current[0]
        elif current and old.latest in servables:
            latest = old.latest  # the new current failed or is loading: the old one keeps serving
        else:  # no current version marked (or none loaded before): the highest loaded one
            latest = max(available) if available else None
        labels: dict[str, int] = {}
        for version, dv in wanted.items():
            for label in dv.labels:
                if version in available:
                    labels[label] = version
                elif label in old.labels and old.labels[label] in servables:
                    labels[label] = old.labels[label]
        keep = available | set(labels.values()) | ({latest} if latest is not None else set())

        # 3. statuses, then publish, then unload what nobody routes to any more
        for version, dv in wanted.items():
            st = statuses.get(version)
            if st is not None and st.state == AVAILABLE:
                statuses[version] = replace(st, labels=dv.labels, path=dv.path)
        unload = [v for v in servables if v not in keep]
        for version in unload:
            st = statuses.get(version)
            statuses[version] = VersionStatus(version, END, path=st.path if st else "",
                                              labels=())
        for version, message in missing.items():
            statuses[version] = VersionStatus(version, END, "NOT_FOUND", message,
                                              wanted_path(deployed, version))
        new = ModelRoutes(
            name,
            {v: s for v, s in servables.items() if v in keep},
            latest,
            labels,
            statuses,
        )
        if not new.servables and not wanted:
            new = replace(new, statuses={v: s for v, s in statuses.items() if s.state == END})
        self._publish(new)
        for version in unload:
            self._event(name, version, END)
        # forget attempts of versions no longer deployed, so a redeploy is tried again
        for (model, version) in list(self._attempts):
            if model == name and version not in wanted:
                del self._attempts[(model, version)]

    # -- reads (any thread; the event loop) ------------------------------------------------
    def models(self) -> list[str]:
        return sorted(self._routes)

    def routes(self, name: str) -> ModelRoutes:
        routes = self._routes.get(name)
        if routes is None:
            raise not_found(f"Servable not found for request: Latest({name})"
                            + self._known_hint())
        return routes

    def _known_hint(self) -> str:
        names = sorted(n for n, r in self._routes.items() if r.servables)
        if not names:
            return "; no model is being served (deploy one with `mlmodel deploy NAME`)"
        return f"; models being served: {', '.join(names)}"

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request for ``name`` (and version or label) goes to, or a ServingError."""
        if version is not None and label is not None:
            raise invalid("a request may name a version or a label, not both")
        routes = self._routes.get(name)
        if routes is None:
            if version is not None:
                raise not_found(f"Could not find version {version} of model {name}"
                                + self._known_hint())
            if label is not None:
                raise not_found(f"Servable not found for request: Labelled({name}, {label})"
                                + self._known_hint())
            raise not_found(f"Servable not found for request: Latest({name})" + self._known_hint())
        if label is not None:
            target = routes.labels.get(label)
            if target is None:
                known = ", ".join(f"{k}->{v}" for k, v in sorted(routes.labels.items())) or "none"
                raise invalid(f"Unrecognized servable version label: {label} "
                              f"(labels of model {name}: {known})")
            return routes.servables[target]
        if version is not None:
            servable = routes.servables.get(version)
            if servable is None:
                st = routes.statuses.get(version)
                serving = sorted(routes.servables)
                if st is not None and st.state in (START, LOADING):
                    raise unavailable(f"version {version} of model {name} is {st.state}; retry "
                                      "in a moment")
                why = ""
                if st is not None and st.error_message:
                    why = f" (it failed to load: {st.error_message})"
                elif st is not None:
                    why = " (it was unloaded)"
                raise not_found(f"Could not find version {version} of model {name}{why}; "
                                f"versions being served: {serving or 'none'}")
            return servable
        if routes.latest is None:
            states = {s.state for s in routes.statuses.values()}
            if states & {START, LOADING}:
                raise unavailable(f"model {name} is still loading; retry in a moment")
            raise not_found(f"Servable not found for request: Latest({name}); no version of it "
                            "is loaded" + self._status_hint(routes))
        return routes.servables[routes.latest]

    def _status_hint(self, routes: ModelRoutes) -> str:
        errors = [f"version {s.version}: {s.error_message}" for s in routes.statuses.values()
                  if s.error_message]
        return f" ({'; '.join(errors)})" if errors else ""

    def status(self, name: str, version: int | None = None,
               label: str | None = None) -> list[VersionStatus]:
        """TF Serving's model status: every version known, or the one named."""
        if version is not None or label is not None:
            if label is not None:
                version = self.resolve(name, label=label).version
            routes = self.routes(name)
            st = routes.statuses.get(version)  # type: ignore[arg-type]
            if st is None:
                raise not_found(f"Could not find version {version} of model {name}")
            return [st]
        routes = self.routes(name)
        return [routes.statuses[v] for v in sorted(routes.statuses, reverse=True)]

    def ready(self) -> bool:
        """Synced once, and every model being served has a version to answer with."""
        if not self.synced.is_set():
            return False
        return all(r.latest is not None for r in self._routes.values() if r.servables)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Poll ``predicate`` until it holds or ``timeout`` seconds pass (for tests and tools)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()
