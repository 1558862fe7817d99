"""The connection to ML Metadata: backend selection, the registry's own types, retries, the lock.

Only ``ml_metadata.metadata_store`` and ``ml_metadata.proto`` are imported (about 0.3 s, no
TensorFlow). Reads retry while SQLite reports the database as locked (TFX writes without our lock);
writes additionally hold the registry write lock (see ``metastore.locking``).
"""

from __future__ import annotations

import contextlib
import os
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from contracts import settings
from metastore.errors import BackendError, InputError
from metastore.locking import DEFAULT_TIMEOUT_S, FileLock, MySQLLock, WriteLock

T = TypeVar("T")

# The registry's own MLMD types (TFX's types are read, never written).
REGISTERED_MODEL = "mlmodel.RegisteredModel"  # context: one per model name
MODEL_VERSION = "mlmodel.ModelVersion"  # artifact: an imported model (a candidate)
DEPLOYMENT = "mlmodel.Deployment"  # artifact: serving_model/<serving_name>/<N>
REGISTRY_ACTION = "mlmodel.Action"  # execution: deploy/stop/rollback/label/import/delete
EVALUATION = "mlmodel.Evaluation"  # artifact: an `mlmodel eval` result (offline, new data)
DATASET = "mlmodel.Dataset"  # artifact: the data an `mlmodel eval` read

STRING, INT, DOUBLE = pb.STRING, pb.INT, pb.DOUBLE

CONTEXT_PROPERTIES = {
    "user": STRING, "type": STRING, "category": STRING, "algorithm": STRING, "format": STRING,
    "source": STRING, "serving_name": STRING, "serving": INT, "current_version": INT,
    "labels": STRING, "created_at": DOUBLE, "updated_at": DOUBLE, "hidden_before": INT,
    "deleted": INT, "feature": STRING, "label_column": STRING,
}
MODEL_VERSION_PROPERTIES = {
    "model_name": STRING, "format": STRING, "type": STRING, "filename": STRING,
    "created_at": DOUBLE, "user": STRING, "class_names": STRING,
}
DEPLOYMENT_PROPERTIES = {
    "serving_name": STRING, "model_name": STRING, "version": INT, "user": STRING,
    "deployed_at": DOUBLE, "source_uri": STRING, "source_artifact_id": INT,
}
EVALUATION_PROPERTIES = {
    "model_name": STRING, "version": INT, "data": STRING, "examples": INT, "rate": DOUBLE,
    "repeat": INT, "accuracy": DOUBLE, "loss": DOUBLE, "result": STRING, "user": STRING,
    "created_at": DOUBLE,
}
DATASET_PROPERTIES = {"layout": STRING, "examples": INT}
ACTION_PROPERTIES = {
    "action": STRING, "model_name": STRING, "version": INT, "label": STRING, "user": STRING,
    "at": DOUBLE, "current_version": INT, "serving": INT, "detail": STRING,
}


@dataclass(frozen=True)
class Backend:
    """Where the metadata lives: a SQLite file or a MySQL database."""

    kind: str  # 'sqlite' | 'mysql'
    path: str = ""
    host: str = ""
    port: int = 3306
    user: str = ""
    password: str = ""
    database: str = ""

    def connection_config(self) -> pb.ConnectionConfig:
        """MLMD's ConnectionConfig for this backend (the pipeline's runners use it too)."""
        config = pb.ConnectionConfig()
        if self.kind == "sqlite":
            config.sqlite.filename_uri = self.path
            config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        else:
            config.mysql.host = self.host
            config.mysql.port = self.port
            config.mysql.database = self.database
            config.mysql.user = self.user
            if self.password:
                config.mysql.password = self.password
        return config

    @property
    def display(self) -> str:
        if self.kind == "sqlite":
            return self.path
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


def parse_backend(metadata: str | None) -> Backend:
    """``metadata`` is a SQLite path or ``mysql://user[:pw]@host:port/db``; None reads the env."""
    value = metadata or settings.default_metadata()
    if value.startswith("mysql://"):
        url = urllib.parse.urlsplit(value)
        database = url.path.lstrip("/")
        if not url.hostname or not database:
            raise InputError(
                f"--metadata {value!r}: expected mysql://user[:password]@host:port/database"
            )
        host = "127.0.0.1" if url.hostname == "localhost" else url.hostname
        return Backend(
            kind="mysql", host=host, port=url.port or 3306,
            user=urllib.parse.unquote(url.username or "root"),
            password=urllib.parse.unquote(url.password or ""), database=database,
        )
    if "://" in value:
        raise InputError(f"--metadata {value!r}: give a SQLite file path or a mysql:// URI")
    return Backend(kind="sqlite", path=os.path.abspath(value))


def _is_busy(exc: Exception) -> bool:
    text = str(exc).lower()
    return isinstance(exc, (mlmd_errors.AbortedError, mlmd_errors.UnavailableError)) or any(
        word in text for word in ("locked", "busy", "deadlock", "lock wait timeout")
    )


def retry_busy(fn: Callable[[], T], what: str, timeout: float = 60.0) -> T:
    """Run ``fn`` again while the database is busy (SQLITE_BUSY or a MySQL deadlock)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            return fn()
        except mlmd_errors.StatusError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise BackendError(f"metadata store error while {what}: {exc}") from None
        time.sleep(delay)  # backoff before retrying a busy database
        delay = min(delay * 2, 0.2)


class _CreatingLock:
    """The write lock; taking it also lets the store create a SQLite file that is missing."""

    def __init__(self, lock: WriteLock, store: Store) -> None:
        self._lock, self._store = lock, store

    @contextlib.contextmanager
    def hold(self, timeout: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
        with self._lock.hold(timeout):
            self._store.allow_create()
            yield


class Store:
    """An MLMD ``MetadataStore`` plus the registry write lock and its type ids.

    Reading never creates a database: while a SQLite file is missing, reads see an empty
    in-memory store (``missing_database``), so ``mlmodel list`` in the wrong folder leaves no
    ``runs/metadata.sqlite`` behind; the first write (under the lock) creates the file.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._raw_lock: WriteLock
        if backend.kind == "sqlite":
            self._raw_lock = FileLock(backend.path + ".lock")
        else:
            self._raw_lock = MySQLLock(
                backend.host, backend.port, backend.user, backend.password,
                f"mlmodel:{backend.database}",
            )
        self.lock = _CreatingLock(self._raw_lock, self)
        self._mlmd: metadata_store.MetadataStore | None = None
        self._types_ready = False
        self._may_create = backend.kind != "sqlite"
        self.missing_database = False  # reads are answered by an empty in-memory store
        self.cache: dict[str, Any] = {}

    def allow_create(self) -> None:
        """From now on, open (and create if need be) the real database."""
        self._may_create = True
        if self.missing_database:
            self._mlmd, self.missing_database, self._types_ready = None, False, False
            self.cache.clear()

    # -- connection ------------------------------------------------------------------------------
    def _config(self) -> pb.ConnectionConfig:
        return self.backend.connection_config()

    def _connect(self) -> metadata_store.MetadataStore:
        b = self.backend
        if b.kind == "sqlite" and not self._may_create and not os.path.exists(b.path):
            self.missing_database = True
            return metadata_store.MetadataStore(
                pb.ConnectionConfig(fake_database=pb.FakeDatabaseConfig()))
        if b.kind == "sqlite":
            parent = os.path.dirname(b.path)
            if parent and not os.path.isdir(parent):
                os.makedirs(parent, exist_ok=True)
        try:
            if b.kind == "sqlite" and os.path.exists(b.path) and os.path.getsize(b.path) > 0:
                return retry_busy(
                    lambda: metadata_store.MetadataStore(self._config()), "opening " + b.display
                )
            # A new database: two clients initialising the schema at once can race.
            with self._raw_lock.hold():
                return retry_busy(
                    lambda: metadata_store.MetadataStore(self._config()), "opening " + b.display
                )
        except BackendError:
            raise
        except Exception as exc:  # MLMD's MySQL errors are often empty
            raise BackendError(
                f"cannot open ML Metadata at {b.display} ({type(exc).__name__}: {exc or 'no detail'}); "
                "check that the database server is running and the URI/path is right"
            ) from None

    @property
    def mlmd(self) -> metadata_store.MetadataStore:
        if self.missing_database and os.path.exists(self.backend.path):  # created since
            self._mlmd, self.missing_database = None, False
            self.cache.clear()
        if self._mlmd is None:
            self._mlmd = self._connect()
        return self._mlmd

    def read(self, fn: Callable[[metadata_store.MetadataStore], T], what: str) -> T:
        return retry_busy(lambda: fn(self.mlmd), what)

    # -- types -----------------------------------------------------------------------------------
    def ensure_types(self) -> None:
        """Register the registry's types (idempotent; call with the write lock held)."""
        if self.missing_database:  # only the write lock lets a missing database be created
            raise BackendError("internal error: a registry write without the write lock")
        if self._types_ready:
            return
        m = self.mlmd
        ctx_type = pb.ContextType(name=REGISTERED_MODEL)
        for key, value in CONTEXT_PROPERTIES.items():
            ctx_type.properties[key] = value
        retry_busy(lambda: m.put_context_type(ctx_type, can_add_fields=True), "registering types")
        for name, props in ((MODEL_VERSION, MODEL_VERSION_PROPERTIES),
                            (DEPLOYMENT, DEPLOYMENT_PROPERTIES),
                            (EVALUATION, EVALUATION_PROPERTIES), (DATASET, DATASET_PROPERTIES)):
            art_type = pb.ArtifactType(name=name)
            for key, value in props.items():
                art_type.properties[key] = value
            retry_busy(lambda t=art_type: m.put_artifact_type(t, can_add_fields=True),
                       "registering types")
        exec_type = pb.ExecutionType(name=REGISTRY_ACTION)
        for key, value in ACTION_PROPERTIES.items():
            exec_type.properties[key] = value
        retry_busy(lambda: m.put_execution_type(exec_type, can_add_fields=True),
                   "registering types")
        self._types_ready = True

    def type_id(self, kind: str, name: str) -> int:
        getter = {"context": self.mlmd.get_context_type, "artifact": self.mlmd.get_artifact_type,
                  "execution": self.mlmd.get_execution_type}[kind]
        return retry_busy(lambda: getter(name), f"reading type {name}").id

    def by_type(self, kind: str, type_name: str) -> list[Any]:
        """All contexts/artifacts/executions of a type; [] if the type is not registered yet."""
        getter = {"context": self.mlmd.get_contexts_by_type,
                  "artifact": self.mlmd.get_artifacts_by_type,
                  "execution": self.mlmd.get_executions_by_type}[kind]

        def call() -> list[Any]:
            try:
                return list(getter(type_name))
            except mlmd_errors.NotFoundError:
                return []

        return retry_busy(call, f"reading {type_name}")


    def listed(self, kind: str, options: Any, what: str) -> list[Any]:
        """Contexts/artifacts/executions matching MLMD ``ListOptions``; [] if a type the filter
        names is not registered yet."""
        getter = {"context": "get_contexts", "artifact": "get_artifacts",
                  "execution": "get_executions"}[kind]

        def call(m: metadata_store.MetadataStore) -> list[Any]:
            try:
                return list(getattr(m, getter)(list_options=options))
            except mlmd_errors.NotFoundError:
                return []

        return self.read(call, what)


def prop(node: Any, key: str, default: Any = None) -> Any:
    """A property or custom property value of an MLMD node, whichever is set."""
    for container in (node.properties, node.custom_properties):
        if key in container:
            value = container[key]
            which = value.WhichOneof("value")
            if which == "int_value":
                return value.int_value
            if which == "double_value":
                return value.double_value
            if which == "string_value":
                return value.string_value
            if which == "bool_value":
                return value.bool_value
            if which == "proto_value" or which == "struct_value":
                return None
    return default


def set_prop(node: Any, key: str, value: Any) -> None:
    """Set a declared property (typed by its Python value)."""
    target = node.properties[key]
    if isinstance(value, bool):
        target.int_value = int(value)
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    else:
        target.string_value = str(value)
