"""A private MariaDB server on a loopback port, for the test suite and the registry benchmark.

Needs Debian's ``mariadb-server`` (``mariadbd`` and ``mariadb-install-db`` on PATH) and PyMySQL.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def available() -> str | None:
    """Why a server cannot be started here, or None if it can."""
    if not shutil.which("mariadbd") or not shutil.which("mariadb-install-db"):
        return "mariadbd / mariadb-install-db not on PATH (apt-get install -y mariadb-server)"
    try:
        import pymysql  # noqa: F401
    except ImportError:
        return "PyMySQL is needed for the MySQL registry lock"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_mariadb(root: Path) -> Iterator[tuple[int, str]]:
    """Start a server with its data under ``root``; yields (port, datadir); stops it after."""
    import pymysql

    datadir = str(root / "data")
    subprocess.run(["mariadb-install-db", "--user=root", f"--datadir={datadir}",
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    with open(root / "server.log", "wb") as log:
        proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", "--user=root", f"--datadir={datadir}",
             f"--socket={root / 'sock'}", f"--port={port}", "--bind-address=127.0.0.1",
             f"--pid-file={root / 'pid'}", "--skip-log-bin"],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    pymysql.connect(host="127.0.0.1", port=port, user="root",
                                    connect_timeout=1).close()
                    break
                except pymysql.MySQLError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"MariaDB did not start; see {root / 'server.log'}") from None
                    time.sleep(0.1)  # polling for the server to accept connections
            yield port, datadir
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
