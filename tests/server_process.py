"""Waiting for a real server process (`serving start`, `mlmodel ui`): the one loop the
process-level tests share."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path

import requests


def _log_text(log: Path | None) -> str:
    return log.read_text(errors="replace") if log is not None and log.exists() else ""


def wait_ready(url: str, proc: subprocess.Popen, seconds: float = 120,  # type: ignore[type-arg]
               log: Path | None = None, path: str = "/v2/health/ready") -> None:
    """Poll ``url`` + ``path`` until it answers 200.

    Fails with the server's log (when given) if the process exits first or ``seconds`` pass. A
    process that never came up is not left running: it gets SIGABRT (with PYTHONFAULTHANDLER=1
    in its environment its log then holds every thread's stack, which says where it is stuck),
    then SIGKILL.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            if requests.get(url + path, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} before {url + path} answered:\n"
                                 f"{_log_text(log)[-5000:]}")
        if time.monotonic() >= deadline:
            proc.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            raise AssertionError(f"{url + path} did not answer within {seconds:g} s; the "
                                 f"process's log (and stacks):\n{_log_text(log)[-20000:]}")
        time.sleep(0.1)  # polling for the process to come up
