"""TensorProto <-> numpy for the gRPC API, with the checks REST applies (``codec.check_array``).

Written by hand instead of ``tf.make_ndarray``/``tf.make_tensor_proto`` because a client's
TensorProto is untrusted: its claimed shape is checked (no negative or overflowing dims, no
element count beyond the message) before any buffer is sized from it, and ``tensor_content``
must be exactly shape x itemsize. numpy's ``frombuffer`` then views the bytes without a copy,
which is also several times faster than TensorFlow's generic conversion for one image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from serving.codec import MAX_ROWS, check_array, shape_text
from serving.errors import invalid
from serving.servable import TensorInfo

NUMERIC = {
    types_pb2.DT_FLOAT: (np.float32, "float_val"), types_pb2.DT_DOUBLE: (np.float64, "double_val"),
    types_pb2.DT_INT32: (np.int32, "int_val"), types_pb2.DT_INT64: (np.int64, "int64_val"),
    types_pb2.DT_UINT8: (np.uint8, "int_val"), types_pb2.DT_INT16: (np.int16, "int_val"),
    types_pb2.DT_INT8: (np.int8, "int_val"), types_pb2.DT_HALF: (np.float16, "half_val"),
    types_pb2.DT_BOOL: (np.bool_, "bool_val"),
}
TO_PROTO = {np.dtype(np.float32): types_pb2.DT_FLOAT, np.dtype(np.float64): types_pb2.DT_DOUBLE,
            np.dtype(np.int32): types_pb2.DT_INT32, np.dtype(np.int64): types_pb2.DT_INT64,
            np.dtype(np.uint8): types_pb2.DT_UINT8, np.dtype(np.bool_): types_pb2.DT_BOOL}
MAX_ELEMENTS = 1 << 31


def dtype_name(dtype: int) -> str:
    return types_pb2.DataType.Name(dtype) if dtype in types_pb2.DataType.values() else str(dtype)


def _shape(proto: tensor_pb2.TensorProto, where: str) -> tuple[int, ...]:
    dims = tuple(int(d.size) for d in proto.tensor_shape.dim)
    if proto.tensor_shape.unknown_rank or any(d < 0 for d in dims):
        raise invalid(f"{where}: tensor shape {list(dims)} has unknown or negative dimensions")
    count = 1
    for d in dims:
        count *= d
        if count > MAX_ELEMENTS:
            raise invalid(f"{where}: tensor shape {list(dims)} claims more than {MAX_ELEMENTS} "
                          "elements")
    return dims


def _check_claim(shape: tuple[int, ...], count: int, proto: tensor_pb2.TensorProto,
                 info: TensorInfo, where: str, max_bytes: int | None) -> None:
    """What the claimed shape would cost, refused before anything is allocated for it: more
    rows than ``codec.MAX_ROWS``, a rank or fixed dimension the signature does not take, or
    more decoded bytes than ``max_bytes`` (the message limit: one value filling a shape must
    not buy more memory than sending every value would)."""
    if shape and shape[0] > MAX_ROWS:
        raise invalid(f"{where}: {shape[0]} examples in one request; send at most {MAX_ROWS}")
    want = info.shape
    if want is not None and (len(shape) != len(want) or any(
            w is not None and w != g for w, g in zip(want[1:], shape[1:], strict=True))):
        raise invalid(f"{where}: input {info.name} has shape {shape_text(shape)} but the "
                      f"signature wants {shape_text(want)} (dim 0 is the batch)")
    if max_bytes is None or info.is_string:
        return  # strings: one string_val per element, so the message itself holds them all
    wire = NUMERIC.get(proto.dtype, (np.float64, ""))[0]
    itemsize = max(np.dtype(wire).itemsize, np.dtype(info.np_dtype).itemsize)
    if count * itemsize > max_bytes:
        raise invalid(f"{where}: shape {list(shape)} claims {count * itemsize:,} bytes of "
                      f"tensor data, more than the server's {max_bytes:,}-byte message limit "
                      "(--max-body-mb); send fewer examples per call")


def claimed_bytes(inputs: Any) -> int:
    """The decoded bytes a request's tensors claim by their shapes (strings: their bytes): what
    the memory budget (``serving.admission``) takes, not the message's wire size, which one
    value filling a shape makes tiny."""
    total = 0
    for proto in inputs.values():
        if proto.dtype == types_pb2.DT_STRING:
            total += sum(len(v) for v in proto.string_val)
            continue
        count = 1
        for dim in proto.tensor_shape.dim:
            count *= max(int(dim.size), 0)
            count = min(count, MAX_ELEMENTS + 1)
        wire = NUMERIC.get(proto.dtype, (np.float64, ""))[0]
        total += count * np.dtype(wire).itemsize
    return total


def _numeric_values(values: Any, proto_dtype: int, np_type: Any, where: str) -> np.ndarray:
    """A typed repeated field as an array, refusing values the dtype cannot hold (numpy
    wrapped them silently: DT_HALF bit patterns above 0xFFFF, int_val of 300 as DT_UINT8)."""
    if proto_dtype == types_pb2.DT_HALF or np.dtype(np_type).kind in "iu":
        wide = np.asarray(values, dtype=np.int64)
        low, high = (0, 0xFFFF) if proto_dtype == types_pb2.DT_HALF else (
            int(np.iinfo(np_type).min), int(np.iinfo(np_type).max))
        if wide.size and (int(wide.min()) < low or int(wide.max()) > high):
            raise invalid(f"{where}: {dtype_name(proto_dtype)} values must lie in [{low}, {high}]"
                          f"; got {int(wide.min())} to {int(wide.max())}")
        if proto_dtype == types_pb2.DT_HALF:
            return wide.astype(np.uint16).view(np.float16)
        return wide.astype(np_type)
    return np.asarray(values, dtype=np_type)


def to_array(proto: tensor_pb2.TensorProto, info: TensorInfo, where: str,
             max_bytes: int | None = None) -> np.ndarray:
    """A request's TensorProto as the array ``info`` wants (INVALID_ARGUMENT otherwise).
    ``max_bytes``: the most decoded tensor bytes its claimed shape may cost (``_check_claim``)."""
    shape = _shape(proto, where)
    count = int(np.prod(shape)) if shape else 1
    if info.is_string:
        if proto.dtype != types_pb2.DT_STRING:
            raise invalid(f"{where}: input {info.name} is DT_STRING, got {dtype_name(proto.dtype)}")
        _check_claim(shape, count, proto, info, where, max_bytes)
        values = list(proto.string_val)
        if len(values) != count:
            raise invalid(f"{where}: shape {list(shape)} needs {count} strings, got {len(values)}")
        array = np.empty(count, dtype=object)
        array[:] = values
        return check_array(array.reshape(shape), info, where)
    if proto.dtype not in NUMERIC:
        raise invalid(f"{where}: input {info.name} is {info.dtype}; {dtype_name(proto.dtype)} "
                      "is not a numeric type this server converts")
    if proto.dtype == types_pb2.DT_BOOL:
        raise invalid(f"{where}: input {info.name} is {info.dtype}; got DT_BOOL (send numbers)")
    _check_claim(shape, count, proto, info, where, max_bytes)  # before anything is allocated
    np_type, field = NUMERIC[proto.dtype]
    if proto.tensor_content:
        itemsize = np.dtype(np_type).itemsize
        if len(proto.tensor_content) != count * itemsize:
            raise invalid(f"{where}: tensor_content holds {len(proto.tensor_content)} bytes; "
                          f"shape {list(shape)} of {dtype_name(proto.dtype)} needs "
                          f"{count * itemsize}")
        array = np.frombuffer(proto.tensor_content, dtype=np_type).reshape(shape)
    else:
        flat = _numeric_values(getattr(proto, field), proto.dtype, np_type, where)
        if len(flat) == count:
            array = flat.reshape(shape)
        elif len(flat) == 1:  # TF's rule: one value fills the shape
            array = np.full(shape, flat[0], dtype=np_type)
        else:
            raise invalid(f"{where}: shape {list(shape)} needs {count} values in {field}, got "
                          f"{len(flat)}")
    try:
        converted = array.astype(info.np_dtype, copy=False)
    except (ValueError, TypeError) as exc:
        raise invalid(f"{where}: input {info.name} is {info.dtype}: {exc}") from exc
    return check_array(converted, info, where)


def to_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """An output array as a TensorProto with the values in the typed repeated field
    (``float_val``, ``int64_val``, ``string_val``...), as TF Serving answers (its
    ``Tensor::AsProtoField``): clients that read ``.float_val`` directly work unchanged."""
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in array.shape])
    if array.dtype == object or array.dtype.kind in "SU":
        return tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, tensor_shape=shape,
            string_val=[v if isinstance(v, bytes) else str(v).encode() for v in array.flat])
    dtype = TO_PROTO.get(array.dtype)
    if dtype is None:
        array, dtype = array.astype(np.float32), types_pb2.DT_FLOAT
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape)
    getattr(proto, NUMERIC[dtype][1]).extend(array.ravel().tolist())
    return proto
