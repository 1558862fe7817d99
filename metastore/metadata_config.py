"""MLMD connection settings from one string: a SQLite path or ``mysql://user[:pw]@host:port/db``.

The URI is parsed by the registry's ``parse_backend`` (one parser for the pipeline, the registry
and the server); this adds what a pipeline run needs on top: the SQLite file's folder, and a
MySQL database created on first use.
"""

from __future__ import annotations

import os

from ml_metadata.proto import metadata_store_pb2

from metastore.store import parse_backend


def connection_config(uri: str) -> metadata_store_pb2.ConnectionConfig:
    """An MLMD ConnectionConfig for ``uri`` (creating the SQLite file's folder if needed)."""
    backend = parse_backend(uri[len("sqlite://"):] if uri.startswith("sqlite://") else uri)
    config = backend.connection_config()
    if backend.kind == "sqlite":
        os.makedirs(os.path.dirname(backend.path), exist_ok=True)
    else:
        config.mysql.create_if_not_exists = True
    return config
