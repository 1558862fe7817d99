"""Issue 22: the current version's directory deleted while serving."""

from __future__ import annotations

import os
from pathlib import Path

from serving.manager import AVAILABLE, END, ModelManager
from serving.servable import Servable
from serving.sources import DirectoryVersion, MissingVersion, registry_source


def _versions(root: Path, gone: set[int]) -> list[DirectoryVersion]:
    """The registry's view: v1 labelled stable, v2 deployed then replaced (files kept), v3
    current; versions in ``gone`` have lost their directory."""
    out = []
    for v, labels, serving, current in ((1, ("stable",), True, False), (2, (), False, False),
                                        (3, (), True, True)):
        dv = DirectoryVersion("m", "m", v, str(root / str(v)), labels, serving, current, float(v))
        out.append(MissingVersion.of(dv) if v in gone else dv)
    return out


def test_a_deleted_current_version_falls_back_to_the_newest_remaining(tmp_path: Path) -> None:
    gone: set[int] = set()
    manager = ModelManager(lambda: _versions(tmp_path, gone),
                           lambda name, version, path: Servable(name, version, path, [], {}, {}))
    manager.sync()
    assert manager.resolve("m").version == 3
    gone.add(3)
    manager.sync()
    assert manager.resolve("m").version == 2  # not 1, the oldest (the labelled one)
    assert manager.resolve("m", label="stable").version == 1
    status = {s.version: s for s in manager.status("m")}
    assert status[3].state == END and status[3].error_code == "NOT_FOUND"
    assert str(tmp_path / "3") in status[3].error_message
    assert "version 2" in status[3].error_message
    assert status[2].state == AVAILABLE
    gone.clear()  # redeployed: the current version serves again
    manager.sync()
    assert manager.resolve("m").version == 3


def test_nothing_left_on_disk_says_so(tmp_path: Path) -> None:
    manager = ModelManager(lambda: _versions(tmp_path, {1, 2, 3}),
                           lambda name, version, path: Servable(name, version, path, [], {}, {}))
    manager.sync()
    status = {s.version: s for s in manager.status("m")}
    assert status[3].error_code == "NOT_FOUND" and "no other version" in status[3].error_message


def test_the_registry_source_marks_missing_directories(tmp_path: Path, saved_model: Path) -> None:
    from benchmarks.tfx_records import add_pipeline_run
    from registry.api import open_registry

    metadata, serving = str(tmp_path / "metadata.sqlite"), str(tmp_path / "serving_model")
    add_pipeline_run(metadata, "mnist", str(saved_model), str(tmp_path / "pushed"))
    reg = open_registry(metadata, serving)
    reg.deploy("mnist", user="root")
    reg.deploy("mnist", user="root")
    snapshot = registry_source(metadata, serving)
    current = next(v for v in snapshot() if v.current)
    os.rename(current.path, current.path + ".gone")
    listed = {v.version: v for v in snapshot()}
    assert getattr(listed[current.version], "missing", False)
    assert not getattr(listed[current.version - 1], "missing", False)
