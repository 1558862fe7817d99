"""ModelManager with a fake loader: load-before-unload, failed loads, labels, rollback, stop."""

from __future__ import annotations

from dataclasses import replace

import pytest

from serving.errors import ServingError
from serving.manager import AVAILABLE, END, LOADING, ModelManager
from serving.servable import Servable
from serving.sources import DirectoryVersion


class Snapshot:
    def __init__(self) -> None:
        self.versions: list[DirectoryVersion] = []

    def __call__(self) -> list[DirectoryVersion]:
        return list(self.versions)

    def deploy(self, version: int, labels: tuple[str, ...] = (), name: str = "m") -> None:
        self.versions = [replace(v, current=False, serving=bool(v.labels)) if v.serving_name == name
                         else v for v in self.versions]
        self.versions.append(DirectoryVersion(name, name, version, f"/x/{name}/{version}", labels,
                                              True, True, float(version)))


class Loader:
    def __init__(self, manager_ref: list[ModelManager]) -> None:
        self.events: list[str] = []
        self.broken: set[int] = set()
        self.manager_ref = manager_ref
        self.seen_during_load: list[int | None] = []

    def __call__(self, name: str, version: int, path: str) -> Servable:
        self.events.append(f"load {version}")
        # while loading, the old version must still answer
        if self.manager_ref:
            try:
                self.seen_during_load.append(self.manager_ref[0].resolve(name).version)
            except ServingError:
                self.seen_during_load.append(None)
        if version in self.broken:
            raise ServingError("FAILED_PRECONDITION", f"{path} holds no saved_model.pb")
        return Servable(name, version, path, [], {}, {})


@pytest.fixture
def setup() -> tuple[Snapshot, Loader, ModelManager]:
    snap = Snapshot()
    ref: list[ModelManager] = []
    loader = Loader(ref)
    manager = ModelManager(snap, loader, poll_interval=0.01)
    ref.append(manager)
    return snap, loader, manager


def test_new_version_loads_before_the_old_unloads(setup) -> None:
    snap, loader, manager = setup
    snap.deploy(1)
    manager.sync()
    assert manager.resolve("m").version == 1
    snap.deploy(2)
    manager.sync()
    assert loader.seen_during_load == [None, 1]  # v1 answered while v2 was loading
    assert manager.resolve("m").version == 2
    states = {s.version: s.state for s in manager.status("m")}
    assert states == {2: AVAILABLE, 1: END}
    with pytest.raises(ServingError) as err:
        manager.resolve("m", version=1)
    assert err.value.http_status == 404 and "versions being served: [2]" in err.value.message


def test_failed_load_is_end_with_error_and_previous_keeps_serving(setup) -> None:
    snap, loader, manager = setup
    snap.deploy(1)
    manager.sync()
    loader.broken.add(2)
    snap.deploy(2)  # the registry stops v1 (no label) and makes v2 current
    manager.sync()
    assert manager.resolve("m").version == 1
    status = {s.version: s for s in manager.status("m")}
    assert status[2].state == END and status[2].error_code == "FAILED_PRECONDITION"
    assert "saved_model.pb" in status[2].error_message
    assert status[1].state == AVAILABLE
    manager.sync()  # the same broken directory is not retried on every poll
    assert loader.events.count("load 2") == 1
    with pytest.raises(ServingError) as err:
        manager.resolve("m", version=2)
    assert "failed to load" in err.value.message


def test_labels_follow_the_snapshot_and_unknown_label_is_400(setup) -> None:
    snap, _, manager = setup
    snap.deploy(1, labels=("stable",))
    snap.deploy(2, labels=("canary",))
    manager.sync()
    assert manager.resolve("m", label="stable").version == 1
    assert manager.resolve("m", label="canary").version == 2
    assert manager.resolve("m").version == 2
    with pytest.raises(ServingError) as err:
        manager.resolve("m", label="nope")
    assert err.value.http_status == 400
    assert err.value.message.startswith("Unrecognized servable version label: nope")
    # move stable to v2: v1 is no longer needed and unloads
    snap.versions = [replace(v, labels=("canary", "stable") if v.version == 2 else (),
                             serving=v.version == 2) for v in snap.versions]
    manager.sync()
    assert manager.resolve("m", label="stable").version == 2
    assert {s.version: s.state for s in manager.status("m")}[1] == END


def test_rollback_moves_latest_and_stop_unloads(setup) -> None:
    snap, _, manager = setup
    snap.deploy(1, labels=("old",))
    snap.deploy(2)
    manager.sync()
    snap.versions = [replace(v, current=v.version == 1) for v in snap.versions]
    manager.sync()
    assert manager.resolve("m").version == 1
    snap.versions = [replace(v, serving=False) for v in snap.versions]
    manager.sync()
    with pytest.raises(ServingError) as err:
        manager.resolve("m")
    assert err.value.http_status == 404
    assert all(s.state == END for s in manager.status("m"))


def test_unknown_model_and_version_and_both(setup) -> None:
    snap, _, manager = setup
    snap.deploy(1)
    manager.sync()
    with pytest.raises(ServingError) as err:
        manager.resolve("other")
    assert err.value.http_status == 404
    assert err.value.message.startswith("Servable not found for request: Latest(other)")
    with pytest.raises(ServingError) as err:
        manager.resolve("m", version=7)
    assert err.value.message.startswith("Could not find version 7 of model m")
    with pytest.raises(ServingError) as err:
        manager.resolve("m", version=1, label="x")
    assert err.value.http_status == 400


def test_source_errors_keep_the_last_state(setup) -> None:
    snap, _, manager = setup
    snap.deploy(1)
    manager.sync()

    def broken() -> list[DirectoryVersion]:
        raise OSError("database is locked")

    manager._source = broken  # noqa: SLF001
    manager.sync()
    assert manager.resolve("m").version == 1
    assert "database is locked" in manager.last_error


def test_loading_state_is_visible_and_polling_thread_follows(setup) -> None:
    snap, loader, manager = setup
    seen: list[str] = []

    def spy(name: str, version: int, path: str) -> Servable:
        seen.append(manager.status(name, version)[0].state)
        return loader(name, version, path)

    manager._loader = spy  # noqa: SLF001
    manager.start()
    try:
        snap.deploy(1)
        assert manager.wait_for(lambda: "m" in manager.models() and manager.ready(), 5)
        assert seen == [LOADING]
        assert manager.status("m")[0].to_json() == {
            "version": "1", "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}
    finally:
        manager.stop()
