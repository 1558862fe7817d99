"""Write locks that serialise registry writers.

MLMD's SQLite backend has no WAL and fails with SQLITE_BUSY after a few hundred milliseconds of
contention, so every registry write holds an exclusive ``fcntl`` lock on ``<db>.lock`` beside the
database. On MySQL/MariaDB the lock is the server's ``GET_LOCK``, which works across hosts.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from typing import Protocol

from metastore.errors import BackendError

DEFAULT_TIMEOUT_S = 600.0


class WriteLock(Protocol):
    def hold(self, timeout: float = DEFAULT_TIMEOUT_S) -> contextlib.AbstractContextManager[None]:
        ...


class _Reentrant:
    """``hold()`` is reentrant per instance: only the outermost one acquires (``_acquire``)."""

    _depth = 0

    @contextlib.contextmanager
    def hold(self, timeout: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with self._acquire(timeout):
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0

    def _acquire(self, timeout: float) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError


class FileLock(_Reentrant):
    """An exclusive ``fcntl.flock`` on ``path`` (created if missing). Reentrant per instance."""

    def __init__(self, path: str) -> None:
        self.path = path

    @contextlib.contextmanager
    def _acquire(self, timeout: float) -> Iterator[None]:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)) or ".", exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o664)
        deadline = time.monotonic() + timeout
        delay = 0.005
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise BackendError(
                            f"timed out after {timeout:.0f}s waiting for the registry lock "
                            f"{self.path}; another mlmodel write is stuck"
                        ) from None
                    time.sleep(delay)  # polling a lock, not synchronising on time
                    delay = min(delay * 2, 0.1)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


class MySQLLock(_Reentrant):
    """MySQL/MariaDB ``GET_LOCK(name)`` held on a dedicated PyMySQL connection."""

    def __init__(self, host: str, port: int, user: str, password: str, name: str) -> None:
        self.host, self.port, self.user, self.password = host, port, user, password
        self.name = name[:64]

    @contextlib.contextmanager
    def _acquire(self, timeout: float) -> Iterator[None]:
        try:
            import pymysql
        except ImportError:
            raise BackendError(
                "the MySQL backend needs PyMySQL for its registry lock: "
                "pip install -c constraints.txt PyMySQL"
            ) from None
        try:
            conn = pymysql.connect(
                host=self.host, port=self.port, user=self.user, password=self.password,
                connect_timeout=10, autocommit=True,
            )
        except pymysql.MySQLError as exc:
            raise BackendError(
                f"cannot connect to MySQL at {self.host}:{self.port} as {self.user!r} for the "
                f"registry lock: {exc}"
            ) from None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT GET_LOCK(%s, %s)", (self.name, int(timeout)))
                (got,) = cur.fetchone()
            if got != 1:
                raise BackendError(
                    f"timed out after {timeout:.0f}s waiting for MySQL lock {self.name!r}"
                )
            try:
                yield
            finally:
                with conn.cursor() as cur:
                    cur.execute("SELECT RELEASE_LOCK(%s)", (self.name,))
        finally:
            conn.close()
