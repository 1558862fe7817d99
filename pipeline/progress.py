"""What the user sees while the pipeline runs: one line per component, a log file for the rest.

TFX's orchestrators have no progress callback, and their "Component X is running." log lines
vanish once a library lowers absl's verbosity mid-run. So we wrap the portable ``Launcher`` that
both LocalDagRunner and BeamDagRunner use for every node: its ``launch`` gives start and end,
and its ``_prepare_execution`` tells whether a cached execution was reused. The Trainer's epochs
arrive through a side channel (``modules/training_progress.py``): a file named in the
environment, one JSON line per epoch, watched by a thread and shown under the running node, in
place on a terminal, one line per epoch otherwise. Everything else
(TFX, Beam, TensorFlow, Keras epochs, C++ logs of worker processes) goes to the log file, unless
``--verbose``: we redirect file descriptors 1 and 2, so even subprocesses are captured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from modules.training_progress import PROGRESS_ENV, EpochProgress

POLL_SECONDS = 0.25


@dataclasses.dataclass
class ComponentTiming:
    name: str
    started: float
    seconds: float | None = None
    cached: bool = False
    failed: bool = False


class ProgressReporter:
    """Prints ``[ n/N] Component ... started / done in 12.3 s`` lines to ``stream``."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.total = total
        self.timings: dict[str, ComponentTiming] = {}
        self.current: str | None = None
        self.in_place = _is_terminal(stream)
        self._pending = False  # an in-place progress line is on the terminal, without newline
        self._lock = threading.Lock()

    def started(self, name: str) -> None:
        self.current = name
        self.timings[name] = ComponentTiming(name, time.monotonic())
        self._write(f"[{len(self.timings):>2}/{self.total}] {name:<28} started")

    def finished(self, name: str, failed: bool = False) -> None:
        timing = self.timings.get(name)
        if timing is None:
            return
        timing.seconds = time.monotonic() - timing.started
        timing.failed = failed
        how = "FAILED" if failed else ("cached" if timing.cached else "done")
        index = list(self.timings).index(name) + 1
        self._write(f"[{index:>2}/{self.total}] {name:<28} {how} in {timing.seconds:6.1f} s")
        if not failed:
            self.current = None

    def epoch(self, progress: EpochProgress) -> None:
        """Show where the running node's training stands (in place on a terminal)."""
        name = self.current or "Trainer"
        index = list(self.timings).index(name) + 1 if name in self.timings else 0
        line = f"[{index:>2}/{self.total}] {name:<28} {progress.describe()}"
        with self._lock:
            if self.in_place:
                self.stream.write("\r\033[K" + line)
                self._pending = True
            else:
                self.stream.write(line + "\n")
            self.stream.flush()

    def _write(self, line: str) -> None:
        with self._lock:
            if self._pending:
                self.stream.write("\r\033[K")
                self._pending = False
            self.stream.write(line + "\n")
            self.stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class EpochWatcher:
    """Follow the Trainer's progress file in a thread and hand each new epoch to ``reporter``."""

    def __init__(self, path: str, reporter: ProgressReporter) -> None:
        self.path = path
        self.reporter = reporter
        self._offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="epoch-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.poll()  # the last epochs written before the stop

    def poll(self) -> None:
        """Report the complete lines written since the last call."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except OSError:
            return
        complete = chunk[: chunk.rfind("\n") + 1]
        self._offset += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            record = EpochProgress.from_line(line)
            if record is not None:
                self.reporter.epoch(record)

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.poll()


@contextlib.contextmanager
def training_progress(reporter: ProgressReporter) -> Iterator[EpochWatcher]:
    """Name a fresh progress file in ``PROGRESS_ENV`` and show its epochs while the block runs."""
    handle, path = tempfile.mkstemp(prefix="training-progress-", suffix=".jsonl")
    os.close(handle)
    previous = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = path
    watcher = EpochWatcher(path, reporter)
    watcher.start()
    try:
        yield watcher
    finally:
        watcher.stop()
        if previous is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = previous
        with contextlib.suppress(OSError):
            os.remove(path)


@contextlib.contextmanager
def reporting(reporter: ProgressReporter,
              after_launch: Callable[[str, Any], None] | None = None,
              ) -> Iterator[ProgressReporter]:
    """Report every node TFX's portable Launcher runs while the block executes.

    ``after_launch(node_id, execution_info)`` is called after each node that ran (not from the
    cache) and succeeded, before the next one starts; it must not raise.
    """
    from tfx.orchestration.portable import launcher

    original_launch = launcher.Launcher.launch
    original_prepare = launcher.Launcher._prepare_execution

    def launch(self: Any, *args: Any, **kwargs: Any) -> Any:
        name = self._pipeline_node.node_info.id
        # Transform leaves absl's logger at WARNING: every later component's INFO lines would be
        # missing from the run's log file. Each node logs at the level the run set.
        logging.getLogger("absl").setLevel(logging.NOTSET)
        reporter.started(name)
        try:
            result = original_launch(self, *args, **kwargs)
        except BaseException:
            reporter.finished(name, failed=True)
            raise
        reporter.finished(name)
        timing = reporter.timings.get(name)
        if after_launch is not None and not (timing is not None and timing.cached):
            after_launch(name, result)
        return result

    def prepare(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original_prepare(self, *args, **kwargs)
        timing = reporter.timings.get(self._pipeline_node.node_info.id)
        if timing is not None and not result.is_execution_needed:
            timing.cached = True
        return result

    launcher.Launcher.launch = launch  # type: ignore[method-assign]
    launcher.Launcher._prepare_execution = prepare  # type: ignore[method-assign]
    try:
        with training_progress(reporter):
            yield reporter
    finally:
        launcher.Launcher.launch = original_launch  # type: ignore[method-assign]
        launcher.Launcher._prepare_execution = original_prepare  # type: ignore[method-assign]


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
