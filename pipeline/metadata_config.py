"""MLMD connection settings from one string: a SQLite path or ``mysql://user[:pw]@host:port/db``."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlparse

from ml_metadata.proto import metadata_store_pb2


def connection_config(uri: str) -> metadata_store_pb2.ConnectionConfig:
    """An MLMD ConnectionConfig for ``uri`` (creating the SQLite file's folder if needed)."""
    if uri.startswith("mysql://"):
        parsed = urlparse(uri)
        database = parsed.path.lstrip("/")
        if not parsed.hostname or not database:
            raise ValueError(
                f"metadata URI {uri!r}: expected mysql://user[:password]@host:port/database"
            )
        config = metadata_store_pb2.ConnectionConfig()
        host = "127.0.0.1" if parsed.hostname == "localhost" else parsed.hostname
        config.mysql.host = host
        config.mysql.port = parsed.port or 3306
        config.mysql.database = database
        config.mysql.user = unquote(parsed.username or "root")
        if parsed.password:
            config.mysql.password = unquote(parsed.password)
        config.mysql.create_if_not_exists = True
        return config
    path = uri[len("sqlite://"):] if uri.startswith("sqlite://") else uri
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return config
