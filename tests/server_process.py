"""Waiting for a real `serving start` process: the one loop the process-level tests share."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import requests


def wait_ready(url: str, proc: subprocess.Popen, seconds: float = 120,  # type: ignore[type-arg]
               log: Path | None = None) -> None:
    """Poll ``url``/v2/health/ready until it answers 200.

    Fails (with the server's log when given) if the process exits first or ``seconds`` pass.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            if requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (
            log.read_text() if log is not None and log.exists() else "server not ready")
        time.sleep(0.1)  # polling for the server to come up
