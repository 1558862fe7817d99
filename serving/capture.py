"""Request capture: sampled requests with their responses, as TF Serving's ``PredictionLog`` TFRecords.

``serving start --capture-rate R`` (0 = off) keeps a share R of the answered requests of every
protocol (REST TF Serving, KServe v2, SageMaker, gRPC) in
``<capture dir>/<serving name>/<version>/capture-<utc>-<pid>-<seq>.tfrecord``
(``contracts/capture.py``: the layout and what one record holds).

The request path only samples and appends references to the request's arrays to a bounded
queue (``offer``: no I/O, no proto building, never blocks); a full queue drops the record and
counts it. One background thread wakes every ``POLL_S``, turns what queued into records and
writes them. A file is written as ``<name>.tmp`` and renamed to its final name when it rotates:
past ``rotate_bytes``, past ``rotate_s`` since it was opened (readers see recent data soon), and
when the server stops (the queue is drained first). After each rotation the oldest finished
files of the whole capture directory are deleted while it holds more than ``max_bytes``.
Any OSError (unwritable directory, full disk) is counted in ``/metrics`` and logged once; the
record is lost and the request, long answered, never sees it.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from contracts import capture as layout
from contracts.signatures import OUTPUT_PROBABILITIES

log = logging.getLogger("serving.capture")

PREDICT = "predict"
CLASSIFY = "classify"
POLL_S = 0.05  # the writer's wake-up: records are written in bursts, off the requests' way
MAX_QUEUED = 10_000  # records waiting for the writer; more are dropped and counted
MAX_QUEUED_BYTES = 64 * 1024 * 1024  # their arrays' bytes (a 64-image request holds 200 KB)
MB = 1024 * 1024


@dataclass(frozen=True)
class CaptureSettings:
    directory: str
    rate: float = 0.0
    rotate_bytes: int = 16 * MB
    rotate_s: float = 60.0
    max_bytes: int = 0  # 0 = no budget


@dataclass
class _Item:
    model: str
    version: int
    signature: str
    method: str
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    class_names: list[str]
    at: float


@dataclass
class _Open:
    tmp_path: str
    final_path: str
    handle: BinaryIO
    opened: float
    size: int = 0  # bytes written
    whole: int = 0  # bytes of whole records (what a failed write is cut back to)


def _nbytes(arrays: dict[str, np.ndarray]) -> int:
    total = 0
    for array in arrays.values():
        if array.dtype == object:
            total += sum(len(v) for v in array.flat if isinstance(v, bytes)) + array.nbytes
        else:
            total += array.nbytes
    return total


# -- records --------------------------------------------------------------------------------------
def _masked_crc(data: bytes) -> int:
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """One TFRecord: length, masked CRC-32C of the length, data, masked CRC-32C of the data."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", _masked_crc(length)) + data
            + struct.pack("<I", _masked_crc(data)))


def tensor_proto(array: np.ndarray) -> Any:
    """An array as a TensorProto: numbers as raw ``tensor_content`` (one copy, what
    ``tf.make_ndarray`` reads; the typed repeated fields cost a Python float per value),
    strings and other dtypes as the gRPC API answers them (``grpc_codec.to_proto``)."""
    from tensorflow.core.framework import tensor_pb2

    from serving.grpc_codec import TO_PROTO, to_proto

    dtype = TO_PROTO.get(array.dtype)
    if dtype is None:
        return to_proto(array)
    proto = tensor_pb2.TensorProto(dtype=dtype,
                                   tensor_content=np.ascontiguousarray(array).tobytes())
    for size in array.shape:
        proto.tensor_shape.dim.add(size=int(size))
    return proto


# Protobuf wire format, written directly for predict logs: building the proto objects took
# ~95 us of the writer thread's GIL per one-image record; these concatenations take ~10 us.
# Field numbers are tensorflow_serving's (prediction_log.proto, predict.proto, model.proto,
# logging.proto) and tensorflow's (tensor.proto, tensor_shape.proto); tests parse the result.
@functools.lru_cache(maxsize=4096)  # the same lengths and sizes come back record after record
def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (a message, string or bytes)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _number(number: int, value: int) -> bytes:
    """A varint field."""
    return _varint(number << 3) + _varint(value)


@functools.lru_cache(maxsize=1024)
def _shape_wire(shape: tuple[int, ...]) -> bytes:
    return _field(2, b"".join(_field(2, _number(1, int(d))) for d in shape))


@functools.lru_cache(maxsize=1024)
def _spec_wire(model: str, version: int, signature: str) -> bytes:
    """ModelSpec: name (1), version (2: Int64Value, value 1), signature_name (3)."""
    return (_field(1, model.encode()) + _field(2, _number(1, version))
            + _field(3, signature.encode()))


def _tensor_wire(array: np.ndarray) -> bytes:
    """TensorProto: dtype (1), tensor_shape (2: dim 2, size 1), tensor_content (4) for numbers,
    string_val (8) for bytes."""
    from tensorflow.core.framework import types_pb2

    from serving.grpc_codec import TO_PROTO

    shape = _shape_wire(array.shape)
    if array.dtype == object:
        values = [v if isinstance(v, bytes) else str(v).encode() for v in array.flat]
        return (_number(1, types_pb2.DT_STRING) + shape
                + b"".join(_field(8, v) for v in values))
    dtype = TO_PROTO.get(array.dtype)
    if dtype is None:
        return bytes(tensor_proto(array).SerializeToString())
    return (_number(1, dtype) + shape
            + _field(4, np.ascontiguousarray(array).tobytes()))


def _tensor_map(number: int, tensors: dict[str, Any]) -> bytes:
    """A map<string, TensorProto> field: one entry (key 1, value 2) per tensor."""
    return b"".join(_field(number, _field(1, key.encode()) + _field(2, _tensor_wire(
        np.asarray(array)))) for key, array in tensors.items())


def record_bytes(item: _Item, rate: float) -> bytes:
    """The serialized ``PredictionLog`` of one answered request (``contracts/capture.py``)."""
    if item.method == CLASSIFY:
        return bytes(prediction_log(item, rate).SerializeToString())
    spec = _spec_wire(item.model, item.version, item.signature)
    metadata = (_field(1, spec) + _field(2, b"\x09" + struct.pack("<d", rate))
                + _field(3, b"serve") + _number(4, int(item.at)))
    request = _field(1, spec) + _tensor_map(2, item.inputs)
    response = _tensor_map(1, item.outputs) + _field(2, spec)
    return _field(1, metadata) + _field(6, _field(1, request) + _field(2, response))


def prediction_log(item: _Item, rate: float) -> Any:
    """The ``PredictionLog`` proto of one answered request (classify logs are written from it;
    ``record_bytes`` writes predict logs directly)."""
    from google.protobuf import wrappers_pb2
    from tensorflow.core.example import example_pb2
    from tensorflow_serving.apis import model_pb2, prediction_log_pb2

    spec = model_pb2.ModelSpec(name=item.model, signature_name=item.signature,
                               version=wrappers_pb2.Int64Value(value=item.version))
    record = prediction_log_pb2.PredictionLog()
    meta = record.log_metadata
    meta.model_spec.CopyFrom(spec)
    meta.sampling_config.sampling_rate = rate
    meta.timestamp_secs = int(item.at)
    meta.saved_model_tags.append("serve")
    if item.method == CLASSIFY:
        log_ = record.classify_log
        log_.request.model_spec.CopyFrom(spec)
        examples = log_.request.input.example_list.examples
        for serialized in next(iter(item.inputs.values())).flat:
            examples.add().CopyFrom(example_pb2.Example.FromString(serialized))
        log_.response.model_spec.CopyFrom(spec)
        probs = _probabilities(item.outputs)
        if probs is not None:
            names = item.class_names if len(item.class_names) == probs.shape[-1] else [
                str(i) for i in range(probs.shape[-1])]
            for row in probs.tolist():
                classes = log_.response.result.classifications.add().classes
                for name, score in zip(names, row, strict=True):
                    classes.add(label=name, score=score)
        return record
    log_ = record.predict_log
    log_.request.model_spec.CopyFrom(spec)
    for key, array in item.inputs.items():
        log_.request.inputs[key].CopyFrom(tensor_proto(np.asarray(array)))
    log_.response.model_spec.CopyFrom(spec)
    for key, array in item.outputs.items():
        log_.response.outputs[key].CopyFrom(tensor_proto(np.asarray(array)))
    return record


def _probabilities(outputs: dict[str, Any]) -> np.ndarray | None:
    probs = outputs.get(OUTPUT_PROBABILITIES)
    if probs is None and len(outputs) == 1:
        probs = next(iter(outputs.values()))
    if probs is None:
        return None
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.dtype.kind != "f" or probs.shape[1] == 0:
        return None
    return probs


# -- the writer -----------------------------------------------------------------------------------
@dataclass
class CaptureWriter:
    """Samples and queues on the request path; one thread writes, rotates and keeps the budget."""

    settings: CaptureSettings
    metrics: Any = None  # serving.metrics.Metrics (capture counters), or None
    _queue: deque[_Item] = field(default_factory=deque)
    _queued_bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _files: dict[tuple[str, int], _Open] = field(default_factory=dict)
    _seq: int = 0
    _logged: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _random: random.Random = field(default_factory=random.Random)

    def start(self) -> CaptureWriter:
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()
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
              class_names: list[str]) -> bool:
        """Queue one answered request (already sampled); False when it was dropped."""
        size = _nbytes(inputs) + _nbytes(outputs)
        item = _Item(model, version, signature, method, inputs, outputs, class_names,
                     time.time())
        with self._lock:
            full = (len(self._queue) >= MAX_QUEUED
                    or self._queued_bytes + size > MAX_QUEUED_BYTES or self._stop.is_set())
            if not full:
                self._queued_bytes += size
                self._queue.append(item)
        if full:
            self._count("dropped", model, version)
        return not full

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, rename every open file to its final name, stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("capture: the writer did not finish within %g s; %d record(s) "
                            "lost", timeout_s, len(self._queue))

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(POLL_S)
            try:
                self._write_queued()
                self._rotate(time.time(), everything=stopping)
            except Exception as exc:  # noqa: BLE001 - the writer must outlive any one bug
                self._error("writer", f"capture: the writer failed ({exc!r}); it goes on", None)
            if stopping:
                return

    def _write_queued(self) -> None:
        """Everything queued, one write per file: records are built here, off the loop."""
        with self._lock:
            items, self._queue = self._queue, deque()
            self._queued_bytes = 0
        batches: dict[tuple[str, int], list[tuple[_Item, bytes]]] = {}
        for item in items:
            try:
                data = tfrecord(record_bytes(item, self.settings.rate))
            except Exception as exc:  # noqa: BLE001 - a record we cannot build is one lost record
                self._error("record", f"capture: a record of {item.model} version "
                            f"{item.version} could not be built ({exc}); it is skipped", item)
                continue
            batches.setdefault((item.model, item.version), []).append((item, data))
        for key, batch in batches.items():
            self._write(key, batch)

    def _write(self, key: tuple[str, int], batch: list[tuple[_Item, bytes]]) -> None:
        """``batch``'s records, in as few writes as the size rotation allows: a file ends at
        the first record that takes it to ``rotate_bytes``."""
        while batch:
            chunk: list[tuple[_Item, bytes]] = []
            try:
                current = self._files.get(key) or self._open(*key)
                room, count = self.settings.rotate_bytes - current.size, 0
                while count < len(batch) and (room > 0 or count == 0):
                    room -= len(batch[count][1])
                    count += 1
                chunk, batch = batch[:count], batch[count:]
                data = memoryview(b"".join(data for _, data in chunk))
                while data:  # unbuffered: each write reaches the file; short writes go on
                    written = current.handle.write(data) or 0
                    data = data[written:]
                    current.size += written
            except OSError as exc:
                self._abandon(key)
                for item, _ in chunk + batch:  # this chunk and the rest: all lost
                    self._error("write", f"capture: cannot write to {self.settings.directory} "
                                f"({exc}); requests are still answered but not captured: free "
                                "space or fix the directory's permissions (counted in "
                                "serving_capture_write_errors)", item)
                return
            current.whole = current.size
            for item, _ in chunk:
                self._count("captured", item.model, item.version)
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
            self._error("write", f"capture: cannot finish {current.tmp_path} ({exc})", None)
            return
        self._enforce_budget()

    def _rotate(self, now: float, everything: bool = False) -> None:
        for key, current in list(self._files.items()):
            if everything or now - current.opened >= self.settings.rotate_s:
                self._finish(key)
            else:
                try:
                    current.handle.flush()
                except OSError as exc:
                    self._abandon(key)
                    self._error("write", f"capture: cannot write {current.tmp_path} ({exc})",
                                None)

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
                            f"{self.settings.max_bytes / MB:g} MB budget ({exc})", None)
                return
            total -= size
            self._count("deleted", "", 0)

    def _error(self, kind: str, message: str, item: _Item | None) -> None:
        self._count("write_errors", item.model if item else "", item.version if item else 0)
        if kind not in self._logged:  # once per kind: a full disk must not flood the log
            self._logged.add(kind)
            log.error("%s", message)

    def _count(self, what: str, model: str, version: int) -> None:
        if self.metrics is not None:
            self.metrics.on_capture(what, model, version)


# -- the hook every protocol calls once a request is answered ---------------------------------
_hook_failed = False


def answered(ctx: Any, servable: Any, signature: str, inputs: dict[str, np.ndarray],
             outputs: dict[str, np.ndarray], method: str = PREDICT) -> None:
    """After a request's model call: the prediction metrics (every request) and, when sampled,
    the capture. Never raises: a failure here is logged once and the request is answered."""
    global _hook_failed
    if ctx is None:
        return
    try:
        probs = _probabilities(outputs)
        if probs is not None and ctx.metrics is not None:
            ctx.metrics.on_predictions(servable.name, servable.version, probs,
                                       servable.class_names)
        writer: CaptureWriter | None = getattr(ctx, "capture", None)
        if writer is not None and writer.sampled():
            writer.offer(servable.name, servable.version, signature, method, inputs, outputs,
                         servable.class_names)
    except Exception:  # noqa: BLE001 - monitoring must never fail a request
        if not _hook_failed:
            _hook_failed = True
            log.exception("capture/prediction metrics failed; requests are still answered")


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
