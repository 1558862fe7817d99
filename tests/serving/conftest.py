"""Fixtures for the model server: one real SavedModel per session, copied into serving trees."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from contracts.runtime import configure_tensorflow

configure_tensorflow()  # Keras 2 before TensorFlow (tests/conftest.py does it too)

from serving.app import ServerConfig  # noqa: E402
from serving.batching import BatchingConfig  # noqa: E402
from serving.server import BackgroundServer, Runtime, build_runtime  # noqa: E402
from serving.sources import DirectoryVersion  # noqa: E402


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real exported SavedModel (our three signatures and dict.tsv), built once."""
    from tests.datagen import export_tiny_model

    return export_tiny_model(tmp_path_factory.mktemp("model") / "saved")


class FakeSource:
    """A registry snapshot the test edits: ``deploy``/``stop``/``label`` like the registry."""

    def __init__(self, serving_dir: Path, model: Path) -> None:
        self.serving_dir = serving_dir
        self.model = model
        self._versions: list[DirectoryVersion] = []
        self._lock = threading.Lock()
        self.fail_reads = False

    def __call__(self) -> list[DirectoryVersion]:
        if self.fail_reads:
            raise OSError("database is locked")
        with self._lock:
            return list(self._versions)

    def add_files(self, name: str, version: int, broken: bool = False) -> str:
        path = self.serving_dir / name / str(version)
        path.parent.mkdir(parents=True, exist_ok=True)
        if broken:
            path.mkdir()
            (path / "saved_model.pb").write_bytes(b"this is not a SavedModel")
        else:
            shutil.copytree(self.model, path)
        return str(path)

    def deploy(self, name: str, version: int, labels: tuple[str, ...] = (),
               broken: bool = False, keep_old: bool = False) -> None:
        path = self.add_files(name, version, broken)
        with self._lock:
            kept = []
            for v in self._versions:
                if v.serving_name == name:
                    v = replace(v, current=False, serving=keep_old and v.serving)
                kept.append(v)
            kept.append(DirectoryVersion(name, name, version, path, labels, True, True,
                                         float(version)))
            self._versions = kept

    def set(self, name: str, version: int, **changes: object) -> None:
        with self._lock:
            self._versions = [replace(v, **changes) if (v.serving_name, v.version) == (name, version)
                              else v for v in self._versions]  # type: ignore[arg-type]

    def stop(self, name: str) -> None:
        with self._lock:
            self._versions = [replace(v, serving=False) if v.serving_name == name else v
                              for v in self._versions]


@dataclass
class Server:
    url: str
    source: FakeSource
    runtime: Runtime
    http: BackgroundServer

    @property
    def manager(self):  # noqa: ANN201
        return self.runtime.manager


def start_server(source: FakeSource, config: ServerConfig | None = None,
                 batching: BatchingConfig | None = None) -> Server:
    runtime = build_runtime(source, batching, poll_interval=0.1)
    runtime.manager.sync()
    http = BackgroundServer(runtime, config or ServerConfig(port=0)).start()
    return Server(http.url, source, runtime, http)


@pytest.fixture
def source(tmp_path: Path, saved_model: Path) -> FakeSource:
    return FakeSource(tmp_path / "serving_model", saved_model)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, saved_model: Path) -> Iterator[Server]:
    """A server on a free loopback port serving root_mnist version 1 (labels: stable).

    Shared by a module's tests: they must not change what it serves.
    """
    source = FakeSource(tmp_path_factory.mktemp("shared") / "serving_model", saved_model)
    source.deploy("root_mnist", 1, labels=("stable",))
    srv = start_server(source)
    yield srv
    srv.http.stop()
    srv.runtime.close()


@pytest.fixture
def capture_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The parts of each ``os.writev`` the capture writer makes, in order (the calls go on)."""
    from serving import capture

    writes: list[int] = []
    real_writev = capture.os.writev

    def counting_writev(fd: int, parts: list[bytes]) -> int:
        writes.append(len(parts))
        return real_writev(fd, parts)

    monkeypatch.setattr(capture.os, "writev", counting_writev)
    return writes
