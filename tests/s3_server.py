"""A real S3-compatible server for the tests: moto's standalone server (``moto[server]``) in a
process of its own on a loopback port, and the environment boto3 and Beam read it through."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from serving.server import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def running_s3(log: Path, free_actions: int | None = None,
               pids: list[int] | None = None) -> Iterator[str]:
    """Start ``moto_server``; yields its endpoint URL; stops it afterwards. ``pids``, if given,
    gets the server's process id (benchmarks read its CPU time).

    ``free_actions``: moto then checks credentials after that many requests (its
    ``INITIAL_NO_AUTH_ACTION_COUNT``; the readiness probe below is one of them), and refuses the
    test credentials from then on, as a store refuses an unknown key.
    """
    port = free_port()
    env = dict(os.environ)
    if free_actions is not None:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(free_actions)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                 str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    if pids is not None:
        pids.append(proc.pid)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(url, timeout=1)
                break
            except requests.RequestException:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)  # polling for the server to come up
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def s3_environment(endpoint: str) -> Iterator[dict[str, str]]:
    """This process's environment pointed at ``endpoint`` (restored afterwards)."""
    values = {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield values
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def upload_tree(folder: Path, bucket: str, prefix: str) -> int:
    """The seed's upload loop, with boto3: every file under ``folder`` to ``s3://bucket/prefix``."""
    import boto3

    s3 = boto3.client("s3")
    count = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            s3.upload_file(str(path), bucket, key)
            count += 1
    return count
