"""The shared wait for a server process: it never leaves a process that did not come up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from serving.server import free_port
from tests.server_process import wait_ready


def test_a_process_that_never_answers_is_stopped_with_its_stacks(tmp_path: Path) -> None:
    log = tmp_path / "stuck.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-c", "import time; time.sleep(120)"],
            stdout=out, stderr=subprocess.STDOUT)
    with pytest.raises(AssertionError, match="did not answer within 1 s") as failed:
        wait_ready(f"http://127.0.0.1:{free_port()}", proc, seconds=1, log=log)
    assert proc.poll() is not None  # not left running
    assert "time.sleep" in str(failed.value) or "<string>" in str(failed.value)  # its stack


def test_a_process_that_exits_first_is_reported_with_its_code(tmp_path: Path) -> None:
    log = tmp_path / "exits.log"
    log.write_text("cannot bind: address in use\n")
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(AssertionError, match=r"(?s)exited with 3 .*address in use"):
        wait_ready(f"http://127.0.0.1:{free_port()}", proc, seconds=60, log=log)
