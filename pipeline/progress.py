"""What the user sees while the pipeline runs: one line per component, a log file for the rest.

TFX's runners announce each component through absl logging ("Component X is running." /
"Component X is finished.", or "node X ..." under Beam) and say when a cached execution is
reused. A logging handler turns those records into progress lines with elapsed times. Everything
else (TFX, Beam, TensorFlow, Keras epochs, C++ logs of worker processes) goes to the log file,
unless ``--verbose``: we redirect file descriptors 1 and 2, so even subprocesses are captured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from typing import TextIO

_RUNNING = re.compile(r"^(?:Component|node) (\S+) is running\.$")
_FINISHED = re.compile(r"^(?:Component|node) (\S+) is finished\.$")
_CACHED = re.compile(r"^A cached execution \d+ is used\.$")


@dataclasses.dataclass
class ComponentTiming:
    name: str
    started: float
    seconds: float | None = None
    cached: bool = False


class ProgressHandler(logging.Handler):
    """Prints ``[ n/N] Component ... started / done in 12.3 s`` lines to ``stream``."""

    def __init__(self, stream: TextIO, total: int) -> None:
        super().__init__(level=logging.INFO)
        self.stream = stream
        self.total = total
        self.timings: dict[str, ComponentTiming] = {}
        self.current: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed foreign log record is not our failure
            return
        if match := _RUNNING.match(message):
            name = match.group(1)
            self.current = name
            self.timings[name] = ComponentTiming(name, time.monotonic())
            self._write(f"[{len(self.timings):>2}/{self.total}] {name:<28} started")
        elif _CACHED.match(message) and self.current in self.timings:
            self.timings[self.current].cached = True
        elif match := _FINISHED.match(message):
            name = match.group(1)
            timing = self.timings.get(name)
            if timing is None:
                return
            timing.seconds = time.monotonic() - timing.started
            how = "cached" if timing.cached else "done"
            index = list(self.timings).index(name) + 1
            self._write(f"[{index:>2}/{self.total}] {name:<28} {how} in {timing.seconds:6.1f} s")
            self.current = None

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


@contextlib.contextmanager
def captured_output(log_path: str, verbose: bool) -> Iterator[TextIO]:
    """Send fds 1 and 2 (and Python logging) to ``log_path``; yield a stream to the terminal."""
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    root = logging.getLogger()
    previous_level = root.level
    root.setLevel(logging.INFO)
    file_handler = logging.FileHandler(log_path)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(file_handler)
    absl_handler = _absl_handler()
    if verbose:
        try:
            yield sys.stdout
        finally:
            root.removeHandler(file_handler)
            file_handler.close()
            root.setLevel(previous_level)
        return
    if absl_handler is not None:
        root.removeHandler(absl_handler)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    terminal = os.fdopen(os.dup(saved_out), "w", buffering=1)
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for fd in (saved_out, saved_err, log_fd):
            os.close(fd)
        terminal.close()
        root.removeHandler(file_handler)
        file_handler.close()
        if absl_handler is not None:
            root.addHandler(absl_handler)
        root.setLevel(previous_level)


def _absl_handler() -> logging.Handler | None:
    try:
        from absl import logging as absl_logging
    except ImportError:
        return None
    handler = absl_logging.get_absl_handler()
    return handler if handler in logging.getLogger().handlers else None
