"""Fixtures for the registry tests: TFX-shaped MLMD records, a real SavedModel, MariaDB, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- TFX-shaped records
def _connect(metadata: str) -> metadata_store.MetadataStore:
    config = pb.ConnectionConfig()
    if metadata.startswith("mysql://"):
        from registry.store import parse_backend

        b = parse_backend(metadata)
        config.mysql.host, config.mysql.port = b.host, b.port
        config.mysql.database, config.mysql.user = b.database, b.user
    else:
        config.sqlite.filename_uri = metadata
        config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)


def _path(key: str) -> pb.Event.Path:
    return pb.Event.Path(steps=[pb.Event.Path.Step(key=key), pb.Event.Path.Step(index=0)])


def add_pipeline_run(metadata: str, name: str, model_dir: str, pushed_root: str,
                     blessed: bool = True, accuracy: float = 0.9,
                     trainer_state: int = pb.Execution.COMPLETE) -> dict[str, int]:
    """Write one pipeline run as TFX 1.16 records it: contexts, executions, artifacts, events.

    The Pusher "pushes" ``model_dir`` to ``<pushed_root>/<name>/<N>`` when blessed.
    """
    m = _connect(metadata)
    ctype = {n: m.put_context_type(pb.ContextType(name=n)) for n in ("pipeline", "pipeline_run",
                                                                       "node")}
    atype = {n: m.put_artifact_type(pb.ArtifactType(name=n))
             for n in ("Model", "ModelBlessing", "ModelEvaluation", "PushedModel")}
    etype = {n: m.put_execution_type(pb.ExecutionType(name=f"tfx.components.{n.lower()}.component.{n}"))
             for n in ("Trainer", "Evaluator", "Pusher")}

    def context(kind: str, cname: str) -> pb.Context:
        found = m.get_context_by_type_and_name(kind, cname)
        if found is not None:
            return found
        [cid] = m.put_contexts([pb.Context(type_id=ctype[kind], name=cname)])
        return m.get_contexts_by_id([cid])[0]

    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}.{uuid.uuid4().hex[:6]}"
    pipeline, run = context("pipeline", name), context("pipeline_run", run_id)

    def execute(component: str, state: int, inputs: list[tuple[pb.Artifact, str]],
                outputs: list[tuple[pb.Artifact, str]]) -> tuple[int, list[int]]:
        node = context("node", f"{name}.{component}")
        execution = pb.Execution(type_id=etype[component], last_known_state=state)
        pairs = [(a, pb.Event(type=pb.Event.INPUT, path=_path(k))) for a, k in inputs]
        pairs += [(a, pb.Event(type=pb.Event.OUTPUT, path=_path(k))) for a, k in outputs]
        exec_id, artifact_ids, _ = m.put_execution(execution, pairs, [pipeline, run, node])
        for artifact, artifact_id in zip([a for a, _ in pairs], artifact_ids, strict=True):
            artifact.id = artifact_id
        return exec_id, list(artifact_ids)

    model = pb.Artifact(type_id=atype["Model"], uri=os.path.dirname(model_dir),
                        state=pb.Artifact.LIVE)
    for key, value in {"hparams": json.dumps({"epochs": 1, "batch_size": 32}),
                       "class_names": json.dumps(["zero", "one", "two", "three", "four", "five",
                                                  "six", "seven", "eight", "nine"]),
                       "history": json.dumps([{"loss": 1.0, "val_loss": 1.1}]),
                       "model_name": name, "tensorboard_dir": ""}.items():
        model.custom_properties[key].string_value = value
    model.custom_properties["train_examples"].int_value = 160
    model.custom_properties["eval_examples"].int_value = 40
    model.custom_properties["train_seconds"].double_value = 12.5
    trainer_id, _ = execute("Trainer", trainer_state, [], [(model, "model")])
    ids = {"trainer_execution": trainer_id, "model": model.id}
    if trainer_state != pb.Execution.COMPLETE:
        return ids
    evaluation = pb.Artifact(type_id=atype["ModelEvaluation"], uri="/eval", state=pb.Artifact.LIVE)
    evaluation.custom_properties["metrics"].string_value = json.dumps({
        "overall": {"sparse_categorical_accuracy": accuracy, "example_count": 40},
        "per_label": {str(i): {"sparse_categorical_accuracy": accuracy} for i in range(10)}})
    blessing = pb.Artifact(type_id=atype["ModelBlessing"], uri="/blessing", state=pb.Artifact.LIVE)
    blessing.custom_properties["blessed"].int_value = int(blessed)
    execute("Evaluator", pb.Execution.COMPLETE, [(model, "model")],
            [(evaluation, "evaluation"), (blessing, "blessing")])
    ids.update(evaluation=evaluation.id, blessing=blessing.id)
    pushed = pb.Artifact(type_id=atype["PushedModel"], uri="/pushed", state=pb.Artifact.LIVE)
    pushed.custom_properties["pushed"].int_value = int(blessed)
    if blessed:
        base = os.path.join(pushed_root, name)
        os.makedirs(base, exist_ok=True)
        version = 1 + max([int(n) for n in os.listdir(base) if n.isdigit()], default=0)
        destination = os.path.join(base, str(version))
        shutil.copytree(model_dir, destination)
        pushed.custom_properties["pushed_destination"].string_value = destination
        pushed.custom_properties["pushed_version"].string_value = str(version)
    execute("Pusher", pb.Execution.COMPLETE, [(model, "model"), (blessing, "model_blessing")],
            [(pushed, "pushed_model")])
    ids["pushed"] = pushed.id
    return ids


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


def _fake_model(root: Path) -> str:
    """A directory shaped like a SavedModel (deploy copies files; it does not load them)."""
    model = root / "trained" / "Format-Serving"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"\x08\x01" * 64)
    (model / "variables" / "variables.index").write_bytes(b"index")
    (model / "assets.extra").mkdir()
    (model / "assets.extra" / "dict.tsv").write_text("label\ttag\n0\tzero\n")
    return str(model)


@pytest.fixture
def sqlite_env(tmp_path: Path) -> Env:
    return Env(str(tmp_path / "metadata.sqlite"), str(tmp_path / "serving_model"),
               _fake_model(tmp_path), tmp_path)


# ----------------------------------------------------------------------------- MariaDB
@dataclass
class MariaDB:
    port: int
    datadir: str

    def uri(self, database: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{database}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """A private MariaDB server on loopback for the session (skips if mariadbd is missing)."""
    server = shutil.which("mariadbd")
    install = shutil.which("mariadb-install-db")
    if not server or not install:
        pytest.skip("mariadbd / mariadb-install-db not on PATH (apt-get install -y mariadb-server)")
    pytest.importorskip("pymysql", reason="PyMySQL is needed for the MySQL registry lock")
    import pymysql

    root = tmp_path_factory.mktemp("mariadb")
    datadir = str(root / "data")
    subprocess.run([install, "--user=root", f"--datadir={datadir}",
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, capture_output=True, timeout=120)
    port = _free_port()
    log = open(root / "server.log", "wb")  # noqa: SIM115 (closed at teardown)
    proc = subprocess.Popen(
        [server, "--no-defaults", "--user=root", f"--datadir={datadir}",
         f"--socket={root / 'sock'}", f"--port={port}", "--bind-address=127.0.0.1",
         f"--pid-file={root / 'pid'}", "--skip-log-bin"],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            pymysql.connect(host="127.0.0.1", port=port, user="root", connect_timeout=1).close()
            break
        except pymysql.MySQLError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                raise RuntimeError(f"MariaDB did not start; see {root / 'server.log'}") from None
            time.sleep(0.1)  # polling for the server to accept connections
    try:
        yield MariaDB(port, datadir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def mysql_env(mariadb: MariaDB, tmp_path: Path) -> Env:
    database = f"mlmd_{uuid.uuid4().hex[:10]}"
    return Env(mariadb.uri(database), str(tmp_path / "serving_model"), _fake_model(tmp_path),
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
