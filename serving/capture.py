"""Request capture: sampled requests with their responses, as TF Serving's ``PredictionLog`` TFRecords.

``serving start --capture-rate R`` (0 = off) keeps a share R of the answered requests of every
protocol (REST TF Serving, KServe v2, SageMaker, gRPC) in
``<capture dir>/<serving name>/<version>/capture-<utc>-<pid>-<seq>.tfrecord``
(``contracts/capture.py``: the layout and what one record holds).

Capture is per model call, not per request: the batcher calls ``after_call`` once a model call
has answered its requests, on the model's thread right after TensorFlow returns (the event loop,
which reads and answers every request, is the server's busiest thread). It counts the call's
predictions for /metrics, samples each request, and writes the sampled requests as one frame
(``capture_records.encode_frame``: a cached header, each request's rows, the call's arrays) to a
pipe that does not block: when the pipe is full the frame is dropped and its records counted. On
the event loop (a lone request the loop answered itself, a sliced big call) the frames of one
pass of the loop go out together, in one ``writev`` at the pass's end. A writer process
(``serving.capture_worker``) reads the pipe, cuts one record per request out of each frame (a
predict record from a per-header template, straight from the frame's bytes:
``capture_records.frame_records``) and writes, rotates and deletes the files. It is a process,
not a thread: a thread building records in the server took the Python lock from the event loop
(about 37 us of CPU per record, and with the lock's hand-offs the server spent ~20% more CPU per
request at concurrency 32). Its counts come back on its stdout to /metrics; its log lines go to
the server's stderr. Stopping the server closes the pipe: the writer finishes every file and
exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import subprocess
import sys
import threading
import time
from typing import IO, Any, NamedTuple

import numpy as np

from serving.capture_records import CLASSIFY, PREDICT, Item, encode_frame, probabilities
from serving.capture_worker import MB, CaptureSettings

__all__ = ["CLASSIFY", "PREDICT", "Answer", "CaptureSettings", "CaptureWriter", "after_call",
           "answer", "writer_for"]

log = logging.getLogger("serving.capture")

PIPE_BYTES = (8 * MB, MB)  # asked for in turn (Linux caps unprivileged pipes at 1 MB)
# A pass's frames are sent early from this many parts (IOV_MAX: 1024) or bytes (a pipe's worth:
# what a partial write leaves pending for the next one stays below about this much).
MAX_BATCH_PARTS = 512
MAX_BATCH_BYTES = MB


def parts_bytes(parts: list[bytes]) -> int:
    return sum(len(part) for part in parts)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class CaptureWriter:
    """Samples and sends answered requests to the writer process; never blocks a request."""

    def __init__(self, settings: CaptureSettings, metrics: Any = None) -> None:
        self.settings = settings
        self.metrics = metrics  # serving.metrics.Metrics, or None
        self._random = random.Random()
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pending = memoryview(b"")  # the rest of a frame the pipe took only part of
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._failed = False
        # Frames offered on an event loop during one pass of it, sent together by one writev at
        # the end of the pass (a batch of predictions answers its requests in the same pass).
        self._batch: list[bytes] = []
        self._batch_keys: list[tuple[str, int, int]] = []  # model, version, records
        self._batch_bytes = 0
        self._flush_scheduled = False

    def start(self) -> CaptureWriter:
        read_end, write_end = os.pipe()
        for size in PIPE_BYTES:
            with contextlib.suppress(OSError, AttributeError):
                import fcntl

                fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, size)
                break
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "serving.capture_worker",
                 json.dumps(dataclasses.asdict(self.settings)), str(level)],
                stdin=read_end, stdout=subprocess.PIPE, env=env, close_fds=True)
        finally:
            os.close(read_end)
        os.set_blocking(write_end, False)
        self._fd = write_end
        assert self._proc.stdout is not None
        self._reader = threading.Thread(target=self._read_counts, args=(self._proc.stdout,),
                                        name="capture-counts", daemon=True)
        self._reader.start()
        log.info("capturing %g of the requests into %s (rotate at %g MB or %g s, budget %s)",
                 self.settings.rate, os.path.abspath(self.settings.directory),
                 self.settings.rotate_bytes / MB, self.settings.rotate_s,
                 f"{self.settings.max_bytes / MB:g} MB" if self.settings.max_bytes else "none")
        return self

    def sampled(self) -> bool:
        rate = self.settings.rate
        return rate >= 1.0 or (rate > 0.0 and self._random.random() < rate)

    def offer(self, model: str, version: int, signature: str, method: str,
              inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
              class_names: list[str], at: float, rows: tuple[int, ...] = ()) -> bool:
        """Send one answered (and sampled) request, or with ``rows`` the requests one model
        call answered (each request's rows along dimension 0, in order: one frame, one record
        each in the writer).

        On an event loop's thread the frame joins the loop's current pass and is sent with the
        others at its end (one system call for a pass, not one per request);
        returns True (a dropped pass is counted then). Elsewhere it is sent at once; False
        when it was dropped.
        """
        parts = encode_frame(Item(model, version, signature, method, inputs, outputs, at,
                                  class_names), rows)
        records = max(1, len(rows))
        loop = _running_loop()
        if loop is None:
            with self._lock:
                sent = self._send(parts)
            if not sent:
                self._count("dropped", model, version, records)
            return sent
        with self._lock:
            self._batch += parts
            self._batch_keys.append((model, version, records))
            self._batch_bytes += parts_bytes(parts)
            full = len(self._batch) >= MAX_BATCH_PARTS or self._batch_bytes >= MAX_BATCH_BYTES
            schedule = not self._flush_scheduled and not full
            if schedule:
                self._flush_scheduled = True
        if full:
            self.send_batch()
        elif schedule:
            loop.call_soon(self.send_batch)
        return True

    def send_batch(self) -> None:
        """Send the frames gathered during the loop's pass (one ``writev``)."""
        with self._lock:
            parts, keys = self._batch, self._batch_keys
            self._batch, self._batch_keys, self._flush_scheduled = [], [], False
            self._batch_bytes = 0
            sent = not parts or self._send(parts)
        if not sent:
            dropped: dict[tuple[str, int], int] = {}
            for model, version, records in keys:
                dropped[(model, version)] = dropped.get((model, version), 0) + records
            for (model, version), count in dropped.items():
                self._count("dropped", model, version, count)

    def _send(self, parts: list[bytes]) -> bool:
        if self._fd is None or (self._pending and not self._flush()):
            return False
        try:
            written = os.writev(self._fd, parts)
        except BlockingIOError:  # the pipe is full: the writer is behind
            return False
        except OSError as exc:  # the writer process is gone
            self._gone(exc)
            return False
        if written < parts_bytes(parts):  # the frame is started: it must be finished
            self._pending = memoryview(b"".join(parts))[written:]
        return True

    def _flush(self) -> bool:
        """Write what is left of a started frame; True once nothing is."""
        assert self._fd is not None
        try:
            written = os.write(self._fd, self._pending)
        except BlockingIOError:
            return False
        except OSError as exc:
            self._gone(exc)
            return False
        self._pending = self._pending[written:]
        return not self._pending

    def _gone(self, exc: OSError) -> None:
        if not self._failed:
            self._failed = True
            log.error("capture: the writer process stopped (%s); requests are still answered "
                      "but no longer captured", exc)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def close(self, timeout_s: float = 60.0) -> None:
        """Send what is left, close the pipe; the writer finishes every file and exits."""
        self.send_batch()
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.set_blocking(fd, True)
                    while self._pending:
                        self._pending = self._pending[os.write(fd, self._pending):]
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._proc is not None:
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("capture: the writer did not finish within %g s; stopping it",
                            timeout_s)
                self._proc.kill()
                self._proc.wait()
        if self._reader is not None:
            self._reader.join(5.0)

    def _read_counts(self, stream: IO[bytes]) -> None:
        """The writer's count lines (``captured MODEL VERSION N``, ``write_errors N``, ...)."""
        for line in stream:
            *key, count = line.decode("utf-8", "replace").split()
            if key and count.isdigit():
                what, model, version = (key + ["", "0"])[:3]
                self._count(what, model, int(version) if version.isdigit() else 0, int(count))

    def _count(self, what: str, model: str, version: int, count: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.on_capture(what, model, version, count)


# -- the hook called once per model call, for the requests it answered ---------------------------
_hook_failed = False


class Answer(NamedTuple):
    """What a request hands to its model call (``Signature.run``) so that the call's answer is
    counted in /metrics and, when sampled, captured: the server's ``Ctx`` (its ``metrics`` and
    ``capture``), the servable, and ``PREDICT`` or ``CLASSIFY`` (the record's kind)."""

    ctx: Any
    servable: Any
    method: str = PREDICT


def answer(ctx: Any, servable: Any, method: str = PREDICT) -> Answer | None:
    """The ``Answer`` of a request of this server, or None outside one (nothing to count)."""
    return None if ctx is None else Answer(ctx, servable, method)


def after_call(signature: str, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
               requests: list[tuple[int, Answer | None]]) -> None:
    """After one model call (``serving.batching``): ``requests`` are the (rows, answer) of the
    requests it answered, in the order of the arrays' dimension 0 (one request: the arrays are
    its own); a request without an answer (a warm-up call) is neither counted nor captured.
    The prediction metrics and the capture's frame are built once for the call, not once per
    request. Thread-safe; never raises: a failure is logged once and the requests are
    answered."""
    global _hook_failed
    try:
        answers = [a for _, a in requests if a is not None]
        if not answers:
            return
        first = answers[0]
        if all(a.ctx is first.ctx and a.method == first.method for a in answers):
            _answered(first, signature, inputs, outputs,
                      [rows for rows, _ in requests], [a is not None for _, a in requests])
            return
        start = 0  # a classify and a predict in one call, say: each request alone
        for rows, each in requests:
            if each is not None:
                _answered(each, signature, _rows(inputs, start, rows),
                          _rows(outputs, start, rows), [rows], [True])
            start += rows
    except Exception:  # noqa: BLE001 - monitoring must never fail a request
        if not _hook_failed:
            _hook_failed = True
            log.exception("capture/prediction metrics failed; requests are still answered")


def _rows(arrays: dict[str, np.ndarray], start: int, rows: int) -> dict[str, np.ndarray]:
    return {key: value[start:start + rows] for key, value in arrays.items()}


def _keep(arrays: dict[str, np.ndarray], rows: list[int], kept: list[bool]
          ) -> dict[str, np.ndarray]:
    """The rows of the kept requests (a call's requests along dimension 0)."""
    starts = np.cumsum([0, *rows[:-1]])
    index = np.concatenate([np.arange(start, start + n) for start, n, keep
                            in zip(starts, rows, kept, strict=True) if keep])
    return {key: np.asarray(value)[index] for key, value in arrays.items()}


def _answered(first: Answer, signature: str, inputs: dict[str, np.ndarray],
              outputs: dict[str, np.ndarray], rows: list[int], counted: list[bool]) -> None:
    """``rows``: each request's; ``counted``: whether it has an answer (a warm-up has not)."""
    ctx, servable = first.ctx, first.servable
    probs = probabilities(outputs if all(counted) else _keep(outputs, rows, counted))
    if probs is not None and ctx.metrics is not None:
        ctx.metrics.on_predictions(servable.name, servable.version, probs, servable.class_names)
    writer: CaptureWriter | None = getattr(ctx, "capture", None)
    if writer is None:
        return
    kept = [count and writer.sampled() for count in counted]
    if not any(kept):
        return
    if not all(kept):  # some of the call's requests sampled: only their rows go
        inputs, outputs = _keep(inputs, rows, kept), _keep(outputs, rows, kept)
        rows = [n for n, keep in zip(rows, kept, strict=True) if keep]
    writer.offer(servable.name, servable.version, signature, first.method, inputs, outputs,
                 servable.class_names, time.time(), tuple(rows) if len(rows) > 1 else ())


def writer_for(config: Any, metrics: Any) -> CaptureWriter | None:
    """A started writer for a ``ServerConfig`` with ``capture_rate`` > 0, else None."""
    rate = float(getattr(config, "capture_rate", 0.0) or 0.0)
    if rate <= 0.0:
        return None
    settings = CaptureSettings(
        directory=config.capture_dir, rate=min(rate, 1.0),
        rotate_bytes=max(1, int(config.capture_rotate_mb * MB)),
        rotate_s=config.capture_rotate_seconds, max_bytes=int(config.capture_max_mb * MB))
    return CaptureWriter(settings, metrics).start()
