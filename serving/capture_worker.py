"""The capture writer process: frames from the server on stdin, PredictionLog files on disk.

``python -m serving.capture_worker SETTINGS_JSON LOG_LEVEL`` is started by
``serving.capture.CaptureWriter``; it imports neither TensorFlow nor the server. Its stdin carries
frames (``capture_records.encode_frame``: a cached header, and the arrays of one model call with
the rows of each request it answered); each read becomes one record per request, appended to the
version's open file. A file is written as ``<name>.tmp`` and
renamed when it rotates: past ``rotate_bytes`` (at the record that crosses it), ``rotate_s``
after it was opened, and at the end of input (the server stopped: every file is finished). After
each rotation the oldest finished files of the whole capture directory go while it holds more
than ``max_bytes``. An OSError loses the records concerned: counted, logged once per kind.
Counts go back to the server as lines on stdout (``captured MODEL VERSION N``, ``write_errors
N``, ``deleted N``) for its /metrics.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import BinaryIO

from contracts import capture as layout
from serving.capture_records import frame_records

log = logging.getLogger("serving.capture")

READ_BYTES = 16 * 1024 * 1024
POLL_S = 0.05  # after a read, wait this long for more (the pipe holds them meanwhile)
REPORT_S = 0.25  # counts go to the server at most this often
MB = 1024 * 1024


@dataclass(frozen=True)
class CaptureSettings:
    directory: str
    rate: float = 0.0
    rotate_bytes: int = 16 * MB
    rotate_s: float = 60.0
    max_bytes: int = 0  # 0 = no budget


@dataclass
class _Open:
    tmp_path: str
    final_path: str
    handle: BinaryIO
    opened: float
    size: int = 0   # bytes written
    whole: int = 0  # bytes of whole records (what a failed write is cut back to)


class CaptureFiles:
    """The open file of each (model, version), rotation, the disk budget, and the counts."""

    def __init__(self, settings: CaptureSettings) -> None:
        self.settings = settings
        self.counts: Counter[tuple[str, ...]] = Counter()
        self._files: dict[tuple[str, int], _Open] = {}
        self._seq = 0
        self._logged: set[str] = set()

    def write_records(self, records: list[tuple[str, int, bytes | Exception]]) -> None:
        """Append each (model, version, TFRecord) to its version's file; an Exception in place
        of the bytes is a record that could not be built: logged once, skipped."""
        batches: dict[tuple[str, int], list[bytes]] = {}
        for model, version, data in records:
            if isinstance(data, Exception):
                self._error("record", f"capture: a record of {model} version {version} could "
                            f"not be built ({data!r}); it is skipped")
                continue
            batches.setdefault((model, version), []).append(data)
        for key, batch in batches.items():
            self._write(key, batch)

    def _write(self, key: tuple[str, int], batch: list[bytes]) -> None:
        """``batch``'s records in as few writes as the size rotation allows: a file ends at
        the record that takes it to ``rotate_bytes``."""
        while batch:
            chunk: list[bytes] = []
            try:
                current = self._files.get(key) or self._open(*key)
                room, count = self.settings.rotate_bytes - current.size, 0
                while count < len(batch) and (room > 0 or count == 0):
                    room -= len(batch[count])
                    count += 1
                chunk, batch = batch[:count], batch[count:]
                data = memoryview(b"".join(chunk))
                while data:  # unbuffered: each write reaches the file; short writes go on
                    written = current.handle.write(data) or 0
                    data = data[written:]
                    current.size += written
            except OSError as exc:
                self._abandon(key)
                self.counts[("write_errors",)] += len(chunk) + len(batch)  # all lost
                self._error("write", f"capture: cannot write to {self.settings.directory} "
                            f"({exc}); requests are still answered but not captured: free "
                            "space or fix the directory's permissions (counted in "
                            "serving_capture_write_errors)")
                return
            current.whole = current.size
            self.counts[("captured", *map(str, key))] += len(chunk)
            if current.size >= self.settings.rotate_bytes:
                self._finish(key)

    def _open(self, model: str, version: int) -> _Open:
        folder = layout.version_dir(self.settings.directory, model, version)
        os.makedirs(folder, exist_ok=True)
        now = time.time()
        self._seq += 1
        name = layout.file_name(time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)), os.getpid(),
                                self._seq)
        final = os.path.join(folder, name)
        tmp = final + layout.PARTIAL_SUFFIX
        handle = open(tmp, "wb", buffering=0)  # noqa: SIM115 - kept open until it rotates
        opened = _Open(tmp, final, handle, now)
        self._files[(model, version)] = opened
        return opened

    def _abandon(self, key: tuple[str, int]) -> None:
        """After a failed write: cut the file back to its whole records and finish it (a file
        with none is removed); a file that cannot even be cut stays ``.tmp``, never read."""
        current = self._files.pop(key, None)
        if current is None:
            return
        try:
            current.handle.close()
            if current.whole:
                os.truncate(current.tmp_path, current.whole)
                os.replace(current.tmp_path, current.final_path)
            else:
                os.remove(current.tmp_path)
        except OSError:
            pass

    def _finish(self, key: tuple[str, int]) -> None:
        current = self._files.pop(key)
        try:
            current.handle.close()
            os.replace(current.tmp_path, current.final_path)
        except OSError as exc:
            self.counts[("write_errors",)] += 1
            self._error("write", f"capture: cannot finish {current.tmp_path} ({exc})")
            return
        self._enforce_budget()

    def rotate(self, now: float, everything: bool = False) -> float:
        """Finish the files due (all of them with ``everything``); returns when the next one
        is due (Unix seconds; ``inf`` with none open)."""
        due = float("inf")
        for key, current in list(self._files.items()):
            if everything or now - current.opened >= self.settings.rotate_s:
                self._finish(key)
            else:
                due = min(due, current.opened + self.settings.rotate_s)
        return due

    def _enforce_budget(self) -> None:
        """Delete the oldest finished files of the whole capture directory (every model, every
        worker process) while the directory holds more than ``max_bytes``."""
        if not self.settings.max_bytes:
            return
        finished: list[tuple[str, str, int]] = []
        total = 0
        for folder, _, names in os.walk(self.settings.directory):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    size = os.path.getsize(path)
                except OSError:
                    continue
                total += size
                if layout.is_capture_file(name):
                    finished.append((name, path, size))
        finished.sort()  # capture-<utc stamp>-<pid>-<seq>: oldest first
        for _, path, size in finished:
            if total <= self.settings.max_bytes:
                break
            try:
                os.remove(path)
            except FileNotFoundError:  # another worker deleted it first
                pass
            except OSError as exc:
                self._error("budget", f"capture: cannot delete {path} to keep the "
                            f"{self.settings.max_bytes / MB:g} MB budget ({exc})")
                return
            total -= size
            self.counts[("deleted",)] += 1

    def _error(self, kind: str, message: str) -> None:
        if kind not in self._logged:  # once per kind: a full disk must not flood the log
            self._logged.add(kind)
            log.error("%s", message)

    def report(self, out: BinaryIO) -> None:
        """The counts since the last report, as lines for the server's /metrics."""
        if not self.counts:
            return
        lines = "".join(" ".join(key) + f" {n}\n" for key, n in self.counts.items())
        self.counts.clear()
        out.write(lines.encode())
        out.flush()


def run(settings: CaptureSettings, source: int, out: BinaryIO) -> None:
    """Until ``source`` ends: read what arrived, write it, rotate, report."""
    files = CaptureFiles(settings)
    buffer = bytearray()
    due = float("inf")
    reported = 0.0
    while True:
        now = time.time()
        timeout = min(due - now, 1.0)
        if files.counts:  # counts waiting: report them on time even if nothing else arrives
            timeout = min(timeout, reported + REPORT_S - now)
        timeout = max(0.0, timeout)
        readable, _, _ = select.select([source], [], [], timeout)
        chunk = os.read(source, READ_BYTES) if readable else b""
        if readable and not chunk:
            break  # the server closed its end: it is stopping
        if chunk:
            buffer += chunk
            files.write_records(frame_records(buffer, settings.rate))
        now = time.time()
        due = files.rotate(now)
        if now - reported >= REPORT_S:  # each line wakes a thread of the server: not too often
            files.report(out)
            reported = now
        if chunk:
            time.sleep(POLL_S)  # let records gather: fewer, bigger reads and writes
    files.rotate(time.time(), everything=True)
    files.report(out)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    settings = CaptureSettings(**json.loads(args[0]))
    logging.basicConfig(level=args[1] if len(args) > 1 else "INFO", stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # the server decides when capture ends (its end of the pipe closes): a Ctrl-C or SIGTERM
    # sent to the whole process group must not cut the last files short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    run(settings, sys.stdin.fileno(), sys.stdout.buffer)


if __name__ == "__main__":
    main()
