"""Fixtures for the registry tests: TFX-shaped MLMD records, a real SavedModel, MariaDB, the CLI.

The records are written by ``benchmarks/tfx_records.py``, which the registry benchmark uses too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from benchmarks.tfx_records import add_pipeline_run, fake_model

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- environments
@dataclass
class Env:
    """A registry environment: metadata (SQLite path or mysql URI), serving dir, a fake model."""

    metadata: str
    serving_dir: str
    model_dir: str
    root: Path

    def registry(self):  # noqa: ANN201
        from registry.api import open_registry

        return open_registry(self.metadata, self.serving_dir)

    def add_run(self, name: str = "mnist", **kwargs: object) -> dict[str, int]:
        return add_pipeline_run(self.metadata, name, self.model_dir, self.serving_dir, **kwargs)

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(MNIST_TFX_METADATA=self.metadata, MNIST_TFX_SERVING_DIR=self.serving_dir,
                   MNIST_TFX_SERVER_URL="http://127.0.0.1:9", USER="root",
                   PYTHONPATH=str(REPO))
        env.pop("MLMODEL_TEST_CRASH_AT", None)
        return env

    def run(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``python -m registry ARGS`` in a subprocess."""
        return subprocess.run([sys.executable, "-m", "registry", *args], cwd=REPO,
                              env=env or self.environ(), capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture
def sqlite_env(tmp_path: Path) -> Env:
    return Env(str(tmp_path / "metadata.sqlite"), str(tmp_path / "serving_model"),
               fake_model(tmp_path), tmp_path)


# ----------------------------------------------------------------------------- MariaDB
@dataclass
class MariaDB:
    port: int
    datadir: str

    def uri(self, database: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """A private MariaDB server on loopback for the session.

    Without Debian's mariadb-server the test skips, naming the package (fails under CI=true).
    """
    from benchmarks.mariadb_server import available, running_mariadb
    from tests.system_parts import require

    require("mariadb")
    why_not = available()
    if why_not:
        pytest.fail(why_not)
    with running_mariadb(tmp_path_factory.mktemp("mariadb")) as (port, datadir):
        yield MariaDB(port, datadir)


@pytest.fixture
def mysql_env(mariadb: MariaDB, tmp_path: Path) -> Env:
    database = f"mlmd_{uuid.uuid4().hex[:10]}"
    return Env(mariadb.uri(database), str(tmp_path / "serving_model"), fake_model(tmp_path),
               tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def any_env(request: pytest.FixtureRequest) -> Env:
    return request.getfixturevalue(f"{request.param}_env")


# ----------------------------------------------------------------------------- a real SavedModel
@pytest.fixture(scope="session")
def saved_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real SavedModel with our three signatures and dict.tsv (a few seconds, once)."""
    from modules.hparams import HParams
    from modules.model import build_model
    from modules.signatures import export_serving_model

    target = tmp_path_factory.mktemp("real_model") / "model"
    export_serving_model(build_model(HParams(epochs=1)), str(target))
    return str(target)


# ----------------------------------------------------------------------------- a fake server
class JsonHandler(BaseHTTPRequestHandler):
    """A quiet stand-in for the model server's status route: subclasses set ``answer``."""

    def answer(self) -> tuple[dict[str, object], int]:
        raise NotImplementedError

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        body, code = self.answer()
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass
