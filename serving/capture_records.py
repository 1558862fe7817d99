"""Captured requests as bytes: TF Serving ``PredictionLog`` records in TFRecord framing.

Written in protobuf wire format directly, without TensorFlow or the generated proto classes: the
capture writer process (``serving.capture_worker``) then starts in a fraction of a second and
needs a few megabytes, and a one-image record costs ~10 us instead of ~95 us with the classes.
Field numbers are tensorflow_serving's (prediction_log.proto, predict.proto, classification.proto,
input.proto, model.proto, logging.proto) and tensorflow's (tensor.proto, tensor_shape.proto,
types.proto); tests/serving/test_capture.py parses the bytes with the real classes.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PREDICT = "predict"
CLASSIFY = "classify"
PROBABILITIES = "probabilities"  # contracts.signatures.OUTPUT_PROBABILITIES

# tensorflow/core/framework/types.proto
DT_STRING = 7
DTYPES = {np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int32): 3,
          np.dtype(np.uint8): 4, np.dtype(np.int16): 5, np.dtype(np.int8): 6,
          np.dtype(np.int64): 9, np.dtype(np.bool_): 10, np.dtype(np.uint16): 17,
          np.dtype(np.float16): 19, np.dtype(np.uint32): 22, np.dtype(np.uint64): 23}


@dataclass
class Item:
    """One answered request, as the server hands it to the writer."""

    model: str
    version: int
    signature: str
    method: str
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    at: float  # Unix seconds it was answered
    class_names: list[str] = field(default_factory=list)


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
def _shape(shape: tuple[int, ...]) -> bytes:
    """TensorShapeProto: dim (2), each with size (1)."""
    return b"".join(_field(2, _number(1, int(d))) for d in shape)


@functools.lru_cache(maxsize=1024)
def _spec(model: str, version: int, signature: str) -> bytes:
    """ModelSpec: name (1), version (2: Int64Value, value 1), signature_name (3)."""
    return (_field(1, model.encode()) + _field(2, _number(1, version))
            + _field(3, signature.encode()))


def _tensor_head(dtype: int, shape: tuple[int, ...], size: int) -> bytes:
    """A numeric TensorProto up to its ``size`` bytes of tensor_content: dtype (1),
    tensor_shape (2), then the content's key and length (4)."""
    return _number(1, dtype) + _field(2, _shape(shape)) + _varint(4 << 3 | 2) + _varint(size)


def tensor(array: np.ndarray) -> bytes:
    """TensorProto: dtype (1), tensor_shape (2), tensor_content (4) for numbers (what
    ``tf.make_ndarray`` reads), string_val (8) for bytes and anything else."""
    dtype = DTYPES.get(array.dtype)
    if dtype is None:
        values = [v if isinstance(v, bytes) else str(v).encode() for v in array.flat]
        return (_number(1, DT_STRING) + _field(2, _shape(array.shape))
                + b"".join(_field(8, v) for v in values))
    content = np.ascontiguousarray(array).tobytes()
    return _tensor_head(dtype, array.shape, len(content)) + content


def _metadata_head(spec: bytes, rate: float) -> bytes:
    """LogMetadata up to its timestamp's value: model_spec (1), sampling_config (2:
    sampling_rate 1, a double: key 0x09), saved_model_tags (3), the key of timestamp_secs (4)."""
    return (_field(1, spec) + _field(2, b"\x09" + struct.pack("<d", rate)) + _field(3, b"serve")
            + _varint(4 << 3))


def _tensor_map(number: int, tensors: dict[str, Any]) -> bytes:
    """A map<string, TensorProto> field: one entry (key 1, value 2) per tensor."""
    return b"".join(_field(number, _field(1, key.encode()) + _field(2, tensor(np.asarray(v))))
                    for key, v in tensors.items())


def probabilities(outputs: dict[str, Any]) -> np.ndarray | None:
    """The [examples, classes] probabilities of a model's outputs, or None."""
    probs = outputs.get(PROBABILITIES)
    if probs is None and len(outputs) == 1:
        probs = next(iter(outputs.values()))
    if probs is None:
        return None
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.dtype.kind != "f" or probs.shape[1] == 0:
        return None
    return probs


def _classifications(item: Item) -> bytes:
    """ClassificationResult: classifications (1), each classes (1) of Class: label (1), score
    (2, a float)."""
    probs = probabilities(item.outputs)
    if probs is None:
        return b""
    width = probs.shape[-1]
    names = item.class_names if len(item.class_names) == width else [
        str(i) for i in range(width)]
    labels = [_field(1, name.encode()) + b"\x15" for name in names]  # 0x15: field 2, fixed32
    rows = []
    for row in probs.astype("<f4"):
        classes = b"".join(_field(1, label + score) for label, score in
                           zip(labels, [row[i:i + 1].tobytes() for i in range(width)],
                               strict=True))
        rows.append(_field(1, classes))
    return b"".join(rows)


def record(item: Item, rate: float) -> bytes:
    """The serialized ``PredictionLog`` of one answered request (``contracts/capture.py``):
    log_metadata (1) and predict_log (6) or classify_log (2)."""
    spec = _spec(item.model, item.version, item.signature)
    metadata = _metadata_head(spec, rate) + _varint(int(item.at))
    if item.method == CLASSIFY:
        # ClassificationRequest: model_spec (1), input (2: Input, example_list 1: ExampleList,
        # examples 1 = the serialized tf.Examples as they are); response: result (1), spec (2)
        examples = b"".join(_field(1, bytes(e)) for e in next(iter(item.inputs.values())).flat)
        request = _field(1, spec) + _field(2, _field(1, examples))
        response = _field(1, _classifications(item)) + _field(2, spec)
        return _field(1, metadata) + _field(2, _field(1, request) + _field(2, response))
    # PredictRequest: model_spec (1), inputs (2); PredictResponse: outputs (1), model_spec (2)
    request = _field(1, spec) + _tensor_map(2, item.inputs)
    response = _tensor_map(1, item.outputs) + _field(2, spec)
    return _field(1, metadata) + _field(6, _field(1, request) + _field(2, response))


def _masked_crc(data: bytes) -> int:
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """One TFRecord: length, masked CRC-32C of the length, data, masked CRC-32C of the data."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", _masked_crc(length)) + data
            + struct.pack("<I", _masked_crc(data)))


# -- frames: how the server hands answered requests to the writer process ----------------------
# <u32 frame length> <u16 header length> <header: JSON of the call's structure> <f64 time>
# <u16 n> n x <u32 rows>, then, per input and output array, <u64 length> and its bytes (raw, or a
# pickle for strings). One frame is one model call: n = 0 when it answered one request (the
# arrays are that request's, as they are), else the rows of each of its n requests in order
# (every array's dimension 0; the writer cuts one record per request from them). The header is
# the same for every call of one shape, so it is cached: a frame costs the server a dict lookup,
# a few tobytes() and one write per model call, not per request.
_FRAME = struct.Struct("<IH")
_TIME = struct.Struct("<d")
_COUNT = struct.Struct("<H")
_LENGTH = struct.Struct("<Q")
_HEADERS: dict[tuple[Any, ...], bytes] = {}
_PARSED: dict[bytes, tuple[Any, ...]] = {}
MAX_CACHED_HEADERS = 1024


def _layout(arrays: dict[str, np.ndarray]) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    return tuple((key, array.dtype.str, array.shape) for key, array in arrays.items())


def _rows_part(rows: tuple[int, ...]) -> bytes:
    """<u16 n> n x <u32 rows> (n = 0 for a single request)."""
    return _COUNT.pack(len(rows)) + struct.pack(f"<{len(rows)}I", *rows)


def encode_frame(item: Item, rows: tuple[int, ...] = ()) -> list[bytes]:
    """``item`` as the parts of one frame (for ``os.writev``). ``rows``: with more than one,
    ``item`` is one model call answering several requests, of these rows each (in order, along
    every array's dimension 0); empty (or one): a single request."""
    if len(rows) > 0xFFFF:
        raise ValueError(f"a frame holds at most 65,535 requests, not {len(rows)}")
    inputs = {k: np.asarray(v) for k, v in item.inputs.items()}
    outputs = {k: np.asarray(v) for k, v in item.outputs.items()}
    names = tuple(item.class_names) if item.method == CLASSIFY else ()
    key = (item.model, item.version, item.signature, item.method, names, _layout(inputs),
           _layout(outputs))
    header = _HEADERS.get(key)
    if header is None:
        import json

        header = json.dumps([item.model, item.version, item.signature, item.method, names,
                             _layout(inputs), _layout(outputs)]).encode()
        if len(_HEADERS) >= MAX_CACHED_HEADERS:
            _HEADERS.clear()
        _HEADERS[key] = header
    parts = [b"", header, _TIME.pack(item.at), _rows_part(rows if len(rows) > 1 else ())]
    for array in (*inputs.values(), *outputs.values()):
        if array.dtype == object:
            import pickle

            data = pickle.dumps(array, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            data = array.tobytes()
        parts += [_LENGTH.pack(len(data)), data]
    parts[0] = _FRAME.pack(sum(len(p) for p in parts), len(header))  # the bytes after it
    return parts


def _arrays(spec: list[Any], data: memoryview, offset: int) -> tuple[dict[str, Any], int]:
    import pickle

    arrays: dict[str, Any] = {}
    for key, dtype, shape in spec:
        (size,) = _LENGTH.unpack_from(data, offset)
        raw = data[offset + _LENGTH.size:offset + _LENGTH.size + size]
        offset += _LENGTH.size + size
        if dtype == "|O":
            arrays[key] = pickle.loads(raw)
        else:
            arrays[key] = np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape)
    return arrays, offset


@dataclass
class _Frame:
    """One whole frame of the server's pipe, not yet decoded."""

    header: bytes
    parsed: tuple[Any, ...]  # model, version, signature, method, names, input_spec, output_spec
    at: float
    view: memoryview  # the whole buffer
    arrays_at: int  # offset of the first array's length
    rows: tuple[int, ...]  # each request's rows when the call answered several, else ()


def _frames(buffer: bytearray) -> list[_Frame]:
    """The whole frames at the start of ``buffer`` (removed from it)."""
    import json

    frames: list[_Frame] = []
    view = memoryview(bytes(buffer))
    offset = 0
    while len(view) - offset >= _FRAME.size:
        size, header_size = _FRAME.unpack_from(view, offset)
        end = offset + _FRAME.size + size
        if end > len(view):
            break
        start = offset + _FRAME.size
        header = bytes(view[start:start + header_size])
        parsed = _PARSED.get(header)
        if parsed is None:
            parsed = tuple(json.loads(header))
            if len(_PARSED) >= MAX_CACHED_HEADERS:
                _PARSED.clear()
            _PARSED[header] = parsed
        (at,) = _TIME.unpack_from(view, start + header_size)
        cursor = start + header_size + _TIME.size
        (count,) = _COUNT.unpack_from(view, cursor)
        cursor += _COUNT.size
        rows = struct.unpack_from(f"<{count}I", view, cursor) if count else ()
        cursor += 4 * count
        frames.append(_Frame(header, parsed, at, view, cursor, rows))
        offset = end
    del buffer[:offset]
    return frames


def _items(frame: _Frame) -> list[Item]:
    """The frame's requests, decoded (one per request of its model call)."""
    model, version, signature, method, names, input_spec, output_spec = frame.parsed
    inputs, cursor = _arrays(input_spec, frame.view, frame.arrays_at)
    outputs, _ = _arrays(output_spec, frame.view, cursor)
    if not frame.rows:
        return [Item(model, version, signature, method, inputs, outputs, frame.at, list(names))]
    items, start = [], 0
    for rows in frame.rows:
        end = start + rows
        items.append(Item(model, version, signature, method,
                          {k: v[start:end] for k, v in inputs.items()},
                          {k: v[start:end] for k, v in outputs.items()}, frame.at, list(names)))
        start = end
    return items


# -- the writer's fast path: a predict record straight from its frame's bytes ------------------
# For one header (model, version, signature, shapes and dtypes) every length in the record is
# fixed, so the record is constant bytes with the time and the arrays' raw bytes between them:
# filled by one join, with no numpy array and no message built per record (a one-image record,
# TFRecord framing included: 10 us against 24 us through decoded arrays, record() and
# tfrecord(); 19 against 39 on a loaded machine). Anything else (classify, strings,
# big-endian arrays, a time that is not a 5-byte varint) takes the general path.
TIME_VARINT_BYTES = 5  # int(Unix seconds) from 1978 to 3058 is a 5-byte varint
_TEMPLATES: dict[tuple[bytes, float, int], tuple[list[bytes], list[int]] | None] = {}


def _template(parsed: tuple[Any, ...], rate: float) -> tuple[list[bytes], list[int]] | None:
    """(constant pieces, the arrays' sizes) of this header's predict record, or None when it
    needs the general path. The record is pieces[0], the time, pieces[1], array 1, pieces[2],
    array 2, ... in the frame's order."""
    model, version, signature, method, _, input_spec, output_spec = parsed
    if method != PREDICT:
        return None
    sizes: list[int] = []
    entries: list[list[bytes | int]] = []
    for key, dtype_str, shape in (*input_spec, *output_spec):
        dtype = np.dtype(dtype_str)
        code = DTYPES.get(dtype)
        if code is None or dtype.byteorder == ">":
            return None
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        sizes.append(size)
        head = _tensor_head(code, tuple(shape), size)
        inner = _field(1, key.encode()) + _varint(2 << 3 | 2) + _varint(len(head) + size) + head
        entries.append([_varint(len(inner) + size), inner, len(sizes)])  # slot: array k
    slot_size = {0: TIME_VARINT_BYTES, **{k: size for k, size in enumerate(sizes, 1)}}

    def field(number: int, parts: list[bytes | int]) -> list[bytes | int]:
        length = sum(slot_size[p] if isinstance(p, int) else len(p) for p in parts)
        return [_varint(number << 3 | 2) + _varint(length), *parts]

    def tensor_map(number: int, chosen: list[list[bytes | int]]) -> list[bytes | int]:
        return [part for entry in chosen for part in [_varint(number << 3 | 2), *entry]]

    spec = _spec(model, version, signature)
    metadata = field(1, [_metadata_head(spec, rate), 0])
    request = field(1, [_field(1, spec), *tensor_map(2, entries[:len(input_spec)])])
    response = field(2, [*tensor_map(1, entries[len(input_spec):]), _field(2, spec)])
    parts = [*metadata, *field(6, [*request, *response])]
    pieces: list[bytes] = [b""]  # a new piece after each slot: the time, then the arrays
    for part in parts:
        if isinstance(part, int):
            pieces.append(b"")
        else:
            pieces[-1] += part
    return pieces, sizes


def frame_records(buffer: bytearray, rate: float, fast: bool = True
                  ) -> list[tuple[str, int, bytes | Exception]]:
    """(model, version, TFRecord or the error that kept it from being built) for every request
    of every whole frame at the start of ``buffer`` (removed from it). ``fast=False``: every
    frame through decoded arrays and ``record()`` (the reference the fast path is tested
    against)."""
    out: list[tuple[str, int, bytes | Exception]] = []
    for frame in _frames(buffer):
        model, version = frame.parsed[0], frame.parsed[1]
        records = max(1, len(frame.rows))
        try:
            built = _fast_records(frame, rate) if fast else None
            if built is None:
                built = [record(item, rate) for item in _items(frame)]
            out += [(model, version, tfrecord(data)) for data in built]
        except Exception as exc:  # noqa: BLE001 - the frame's records lost, counted by the writer
            out += [(model, version, exc)] * records
    return out


def _per_request(parsed: tuple[Any, ...], rows: int) -> tuple[Any, ...]:
    """A call's header as one request of ``rows`` rows would have it."""
    *head, input_spec, output_spec = parsed
    return (*head, *([(key, dtype, [rows, *shape[1:]]) for key, dtype, shape in spec]
                     for spec in (input_spec, output_spec)))


def _fast_records(frame: _Frame, rate: float) -> list[bytes] | None:
    """The frame's records through their headers' templates, or None for the general path."""
    requests = frame.rows or (-1,)  # -1: the frame's arrays are one request's, as they are
    view, offset = frame.view, frame.arrays_at
    arrays: list[tuple[int, int]] = []  # (offset, length) of each array's bytes
    for _ in range(len(frame.parsed[5]) + len(frame.parsed[6])):
        (length,) = _LENGTH.unpack_from(view, offset)
        arrays.append((offset + _LENGTH.size, length))
        offset += _LENGTH.size + length
    total = sum(requests)
    when = _varint(int(frame.at))
    if len(when) != TIME_VARINT_BYTES:
        return None
    records: list[bytes] = []
    start = 0  # the request's first row
    for rows in requests:
        key = (frame.header, rate, rows)
        if key not in _TEMPLATES:
            if len(_TEMPLATES) >= MAX_CACHED_HEADERS:
                _TEMPLATES.clear()
            _TEMPLATES[key] = _template(
                frame.parsed if rows < 0 else _per_request(frame.parsed, rows), rate)
        found = _TEMPLATES[key]
        if found is None:
            return None
        pieces, sizes = found
        joined: list[Any] = [pieces[0], when, pieces[1]]
        for size, piece, (at, length) in zip(sizes, pieces[2:], arrays, strict=True):
            if rows < 0:
                if length != size:  # not what the header's shape says: the general path decides
                    return None
                begin = at
            else:
                if length * rows != size * total:  # rows of unequal size: the general path
                    return None
                begin = at + size * start // rows if rows else at
            joined += [view[begin:begin + size], piece]
        records.append(b"".join(joined))
        start += max(rows, 0)
    return records
