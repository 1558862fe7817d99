"""JSON <-> numpy for the three protocols, with every check a bad request needs.

Everything here raises ``ServingError`` (400) with a message that names the part of the request
at fault and what the signature wants; nothing here imports TensorFlow except ``classify``'s
tf.Example building.
"""

from __future__ import annotations

import base64
import binascii
import json
from itertools import chain
from typing import Any

import numpy as np

try:  # optional: about 1.6x faster parsing; the json fallback also takes NaN/Infinity literals
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None

from contracts.dictionary import default_class_names
from contracts.signatures import (
    INPUT_EXAMPLES,
    INPUT_IMAGE_BYTES,
    INPUT_IMAGES,
    OUTPUT_PROBABILITIES,
    SERVING_DEFAULT,
    SERVING_IMAGES,
)
from datasources.images import ImageTooLarge
from serving import image_formats
from serving.batching import Arrays
from serving.errors import invalid
from serving.servable import Servable, Signature, TensorInfo

MAX_ROWS = 10_000
def parse_json(body: bytes) -> Any:
    """TF Serving accepts NaN and Infinity literals; so does Python's json."""
    if not body.strip():
        raise invalid("JSON Parse error: The document is empty; send a JSON object body")
    if _orjson is not None:
        try:
            return _orjson.loads(body)
        except _orjson.JSONDecodeError:
            pass  # NaN/Infinity, or really malformed: json decides and names the error
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"JSON Parse error: {exc}") from exc


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


# -- values -----------------------------------------------------------------------------------
def _to_bytes(value: Any, where: str) -> Any:
    if isinstance(value, list):
        return [_to_bytes(v, where) for v in value]
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise invalid(f"{where}: a binary value must be {{\"b64\": \"<base64>\"}}, got "
                          f"an object with keys {sorted(value)}")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise invalid(f"{where}: the b64 value is not valid base64 ({exc}); encode the "
                          "bytes with standard base64") from exc
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):  # already decoded (KServe data after reshaping)
        return value
    raise invalid(f"{where}: expected a string or {{\"b64\": ...}} for a DT_STRING input, got "
                  f"{type(value).__name__} {value!r:.40}")


def shape_text(shape: tuple[int | None, ...]) -> str:
    return "[" + ",".join("-1" if d is None else str(d) for d in shape) + "]"


def _regular_numbers(value: Any, ndim: int) -> np.ndarray | None:
    """The fast path for numbers: ``value`` as an array when it is a regular ``ndim``-deep
    nesting of lists holding only ints and floats, else None (the general path then decides,
    and words any error).

    Flattening level by level with C-level iterators and letting numpy see one flat list is
    about twice as fast as ``np.asarray`` discovering a 28x28x1 nesting itself. The dtype is
    inferred from the same leaves, so the result equals ``np.asarray(value)``.
    """
    level: list[Any] = [value]
    shape: list[int] = []
    for _ in range(ndim):
        if set(map(type, level)) != {list}:
            return None
        lengths = set(map(len, level))
        if len(lengths) != 1:
            return None
        shape.append(lengths.pop())
        level = list(chain.from_iterable(level))
    if not level or not set(map(type, level)) <= {float, int}:
        return None
    try:
        flat = np.array(level)
    except (OverflowError, ValueError):  # an int too big for a float
        return None
    if flat.dtype.kind not in "fi":  # ints beyond int64
        return None
    return flat.reshape(shape)


def _check_grey_range(array: np.ndarray, where: str) -> None:
    """Our ``images`` input is grey values in [0, 1] (the contract the model was trained on).
    Values outside it were answered with confident nonsense (a 0-255 image, or 1e30); they are
    a client's mistake, so they are refused and the error says how to fix it."""
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        hint = (" (these look like 0-255 pixels: divide by 255, or send the PNG bytes to the "
                f"{SERVING_IMAGES} signature)" if high <= 255.0 and low >= 0.0 else "")
        raise invalid(f"{where}: input {INPUT_IMAGES} must hold grey values in [0, 1]; got "
                      f"values from {low:g} to {high:g}{hint}")


def to_array(value: Any, info: TensorInfo, where: str) -> np.ndarray:
    """``value`` (a JSON tensor whose dim 0 is the batch) as the array ``info`` wants."""
    if info.is_string:
        converted = _to_bytes(value, where)
        try:
            array = np.array(converted, dtype=object)
        except ValueError as exc:
            raise invalid(f"{where}: input {info.name} is ragged ({exc})") from exc
        if not all(isinstance(x, bytes) for x in array.flat):
            raise invalid(f"{where}: input {info.name} is ragged; every example needs the same "
                          "shape")
    else:
        fast = None
        if info.shape is not None and len(info.shape) > 0:
            fast = _regular_numbers(value, len(info.shape))
        try:
            inferred = fast if fast is not None else np.asarray(value)
            if inferred.dtype.kind == "b":
                raise invalid(f"{where}: input {info.name} is {info.dtype}; got true/false where "
                              "numbers belong (send 0 and 1)")
            if inferred.dtype.kind in "OUSV":
                raise invalid(f"{where}: input {info.name} is {info.dtype}; got strings or objects "
                              "where numbers belong (binary {\"b64\": ...} values are for "
                              "DT_STRING inputs only), or a ragged array")
            array = inferred.astype(info.np_dtype, copy=False)
        except (ValueError, TypeError, OverflowError) as exc:
            raise invalid(f"{where}: input {info.name} must be a regular array of "
                          f"{info.dtype} values: {exc}") from exc
    return check_array(array, info, where)


def undecodable_message(exc: UnicodeDecodeError) -> str:
    """A UnicodeDecodeError from a model call is TensorFlow failing to decode its own error
    message, which quoted the request's bytes: the input did not decode, the client's error."""
    return (f"the model could not decode an input (its error quoted bytes that are not UTF-8: "
            f"{exc.reason} at byte {exc.start}); check the images / tf.Examples are valid")


def _check_examples(array: np.ndarray, where: str) -> None:
    """Serialized tf.Examples that do not parse are the client's error (400), named here: in
    the model, TensorFlow's error quoted the bytes and failed to decode its own message (500)."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.example import example_pb2

    for i, item in enumerate(array.flat):
        try:
            example_pb2.Example.FromString(item)
        except (DecodeError, TypeError) as exc:
            raise invalid(f"{where}: example {i} of {INPUT_EXAMPLES} is not a serialized "
                          f"tf.Example ({exc}); send tf.train.Example(...).SerializeToString()"
                          ", base64-encoded as {\"b64\": ...} in JSON") from None


def check_array(array: np.ndarray, info: TensorInfo, where: str) -> np.ndarray:
    """The checks every protocol applies once a tensor is an array (REST's JSON, gRPC's
    TensorProto): finite floats, decodable image bytes, a batch within limits, the signature's
    shape, grey values in [0, 1] for our ``images``. Returns the array (image bytes transcoded)."""
    if info.is_float and not np.isfinite(array).all():
        raise invalid(f"{where}: input {info.name} holds NaN or Infinity; send finite values "
                      "(images are grey values in [0, 1])")
    if array.ndim > 0 and array.shape[0] > MAX_ROWS:
        raise invalid(f"{where}: {array.shape[0]} examples in one request; send at most {MAX_ROWS}")
    if info.name == INPUT_IMAGE_BYTES:
        for i, item in enumerate(array.flat):
            try:
                usable = image_formats.decodable(item, f"{where}: example {i} of "
                                                       f"{INPUT_IMAGE_BYTES}")
            except ImageTooLarge as exc:
                raise invalid(str(exc)) from None
            except ValueError as exc:
                raise invalid(f"{where}: example {i} of {INPUT_IMAGE_BYTES} is {exc}") from None
            if usable is None:
                raise invalid(f"{where}: example {i} of {INPUT_IMAGE_BYTES} is not a PNG, JPEG, "
                              "GIF, BMP or WebP image; send the file's bytes base64-encoded as "
                              "{\"b64\": ...}")
            if usable is not item:
                array.flat[i] = usable
    if info.name == INPUT_EXAMPLES and info.is_string:
        _check_examples(array, where)
    if array.ndim == 0 or array.shape[0] == 0:
        raise invalid(f"{where}: input {info.name} is empty; send at least one example")
    if array.shape[0] > MAX_ROWS:
        raise invalid(f"{where}: {array.shape[0]} examples in one request; send at most {MAX_ROWS}")
    if info.shape is not None:
        want = info.shape
        if array.ndim != len(want) or any(w is not None and w != g
                                          for w, g in zip(want[1:], array.shape[1:], strict=True)):
            raise invalid(
                f"{where}: input {info.name} has shape {shape_text(array.shape)} but the "
                f"signature wants {shape_text(want)} (dim 0 is the batch)"
            )
    if info.name == INPUT_IMAGES and info.is_float:
        _check_grey_range(array, where)
    return array


def to_json_value(array: np.ndarray) -> Any:
    if array.dtype == object or array.dtype.kind == "S":
        return _bytes_json(array.tolist())
    if array.dtype in (np.float32, np.float16):
        # shortest repr of the float32 value (0.1, as TF Serving prints it; not 0.10000000149)
        return array.astype(str).astype(np.float64).tolist()
    return array.tolist()


def _bytes_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_bytes_json(v) for v in value]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    return value


# -- TF Serving predict --------------------------------------------------------------------
def decode_predict(body: Any, servable: Servable) -> tuple[Signature, Arrays, bool]:
    """(signature, inputs, row_format) for a TF Serving predict request body."""
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object with \"instances\" or \"inputs\"")
    if "instances" in body and "inputs" in body:
        raise invalid("Request can have either \"instances\" or \"inputs\", not both")
    sig_name = body.get("signature_name")
    if sig_name is not None and not isinstance(sig_name, str):
        raise invalid("\"signature_name\" must be a string")
    sig = servable.signature(sig_name)
    if "instances" in body:
        return sig, decode_instances(body["instances"], sig), True
    if "inputs" in body:
        return sig, decode_columns(body["inputs"], sig), False
    raise invalid("Missing \"instances\" or \"inputs\" key; send "
                  "{\"instances\": [example, ...]} (row format) or {\"inputs\": ...} (columnar)")


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _check_rows(rows: int, where: str) -> None:
    if rows > MAX_ROWS:
        raise invalid(f"{where}: {rows} examples in one request; send at most {MAX_ROWS}")


def decode_instances(instances: Any, sig: Signature) -> Arrays:
    if not isinstance(instances, list):
        raise invalid("\"instances\" must be a list with one entry per example")
    if not instances:
        raise invalid("\"instances\" is empty; send at least one example")
    _check_rows(len(instances), "instances")
    names = list(sig.inputs)
    columns: dict[str, list[Any]] = {n: [] for n in names}
    for i, instance in enumerate(instances):
        named = isinstance(instance, dict) and not _is_b64(instance)
        if len(names) == 1 and not named:
            columns[names[0]].append(instance)
            continue
        if not named:
            raise invalid(f"instances[{i}]: signature {sig.name} has inputs {names}, so each "
                          "instance must be an object keyed by input name")
        if set(instance) != set(names):
            raise invalid(f"instances[{i}]: has keys {sorted(instance)}, signature {sig.name} "
                          f"takes {names}")
        for n in names:
            columns[n].append(instance[n])
    return {n: to_array(columns[n], sig.inputs[n], "instances") for n in names}


def decode_columns(inputs: Any, sig: Signature) -> Arrays:
    names = list(sig.inputs)
    if isinstance(inputs, dict) and not _is_b64(inputs):
        if set(inputs) != set(names):
            raise invalid(f"\"inputs\" has keys {sorted(inputs)}, signature {sig.name} takes "
                          f"{names}")
        values = inputs
    elif len(names) == 1:
        values = {names[0]: inputs}
    else:
        raise invalid(f"signature {sig.name} has inputs {names}; \"inputs\" must be an object "
                      "keyed by input name")
    for n in names:  # rows counted before any array is built
        if isinstance(values[n], list):
            _check_rows(len(values[n]), "inputs")
    arrays = {n: to_array(values[n], sig.inputs[n], "inputs") for n in names}
    if len({a.shape[0] for a in arrays.values()}) > 1:
        raise invalid("\"inputs\": every input needs the same batch size (dim 0)")
    return arrays


def encode_predict(outputs: Arrays, row: bool) -> dict[str, Any]:
    keys = sorted(outputs)
    if row:
        if len(keys) == 1:
            return {"predictions": to_json_value(outputs[keys[0]])}
        cols = {k: to_json_value(outputs[k]) for k in keys}
        rows = len(next(iter(cols.values())))
        return {"predictions": [{k: cols[k][i] for k in keys} for i in range(rows)]}
    if len(keys) == 1:
        return {"outputs": to_json_value(outputs[keys[0]])}
    return {"outputs": {k: to_json_value(outputs[k]) for k in keys}}


# -- TF Serving classify (on the tf.Example signature) ---------------------------------------
def _feature(value: Any, where: str) -> Any:
    import tensorflow as tf

    values = value if isinstance(value, list) else [value]
    if not values:
        return tf.train.Feature(float_list=tf.train.FloatList(value=[]))
    if all(isinstance(v, bool | int) and not isinstance(v, bool) for v in values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    if all(isinstance(v, str | dict) for v in values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=_to_bytes(values, where)))
    raise invalid(f"{where}: a feature must be a list of ints, floats or strings")


def decode_classify(body: Any, servable: Servable) -> tuple[Signature, Arrays]:
    """(signature, {input: serialized tf.Examples}) for a TF Serving classify request."""
    import tensorflow as tf

    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object with \"examples\"")
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise invalid("\"examples\" must be a non-empty list of objects (feature name -> values)")
    context = body.get("context", {})
    if not isinstance(context, dict):
        raise invalid("\"context\" must be an object (feature name -> values)")
    sig_name = body.get("signature_name")
    if sig_name is None or sig_name == SERVING_DEFAULT:
        # Ours takes INPUT_EXAMPLES ("examples"); other models' tf.Example inputs say "example".
        string_sigs = [s for s in servable.signatures.values()
                       if len(s.inputs) == 1 and next(iter(s.inputs.values())).is_string
                       and "example" in next(iter(s.inputs))]
        if not string_sigs:
            raise invalid(f"model {servable.name} has no tf.Example signature to classify with")
        sig = string_sigs[0]
    else:
        sig = servable.signature(sig_name)
    if len(sig.inputs) != 1 or not next(iter(sig.inputs.values())).is_string:
        raise invalid(f"signature {sig.name} does not take serialized tf.Examples; use :predict")
    serialized = []
    for i, example in enumerate(examples):
        if not isinstance(example, dict):
            raise invalid(f"examples[{i}] must be an object (feature name -> values)")
        merged = {**context, **example}
        feats = {k: _feature(v, f"examples[{i}].{k}") for k, v in merged.items()}
        serialized.append(tf.train.Example(features=tf.train.Features(feature=feats))
                          .SerializeToString())
    array = np.empty(len(serialized), dtype=object)
    array[:] = serialized
    return sig, {next(iter(sig.inputs)): array}


def encode_classify(outputs: Arrays, class_names: list[str]) -> dict[str, Any]:
    probs = outputs.get(OUTPUT_PROBABILITIES,
                        outputs.get("scores", next(iter(outputs.values()))))
    results = []
    for row in np.asarray(probs).tolist():
        names = class_names if len(class_names) == len(row) else default_class_names(len(row))
        results.append([[names[i], p] for i, p in enumerate(row)])
    return {"results": results}


# -- KServe v2 ----------------------------------------------------------------------------------
V2_DATATYPES: dict[str, str] = {
    "DT_FLOAT": "FP32", "DT_DOUBLE": "FP64", "DT_HALF": "FP16", "DT_INT8": "INT8",
    "DT_INT16": "INT16", "DT_INT32": "INT32", "DT_INT64": "INT64", "DT_UINT8": "UINT8",
    "DT_UINT16": "UINT16", "DT_UINT32": "UINT32", "DT_UINT64": "UINT64", "DT_BOOL": "BOOL",
    "DT_STRING": "BYTES",
}


def v2_tensor_meta(info: TensorInfo) -> dict[str, Any]:
    shape = [-1] if info.shape is None else [-1 if d is None else d for d in info.shape]
    return {"name": info.name, "datatype": V2_DATATYPES.get(info.dtype, info.dtype),
            "shape": shape}


def decode_infer(body: Any, servable: Servable) -> tuple[Signature, Arrays, list[str] | None]:
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object with \"inputs\"")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise invalid("\"inputs\" must be a non-empty list of {name, shape, datatype, data}")
    by_name: dict[str, dict[str, Any]] = {}
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise invalid(f"inputs[{i}] must be an object with a string \"name\"")
        by_name[tensor["name"]] = tensor
    params = body.get("parameters") or {}
    sig_name = params.get("signature_name") if isinstance(params, dict) else None
    sig = servable.signature(sig_name) if sig_name else servable.signature_with_inputs(set(by_name))
    if set(by_name) != set(sig.inputs):
        raise invalid(f"signature {sig.name} takes inputs {sorted(sig.inputs)}, got "
                      f"{sorted(by_name)}")
    arrays: Arrays = {}
    for name, tensor in by_name.items():
        info = sig.inputs[name]
        where = f"input {name}"
        shape = tensor.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise invalid(f"{where}: \"shape\" must be a list of non-negative integers")
        want_type = V2_DATATYPES.get(info.dtype)
        if tensor.get("datatype") != want_type:
            raise invalid(f"{where}: datatype {tensor.get('datatype')!r}, the model wants "
                          f"{want_type}")
        if "data" not in tensor:
            raise invalid(f"{where}: \"data\" is missing")
        if shape:
            _check_rows(shape[0], where)
        data = tensor["data"]
        flat = np.asarray(to_array([data], TensorInfo(f"{name}.data", info.dtype, None), where)
                          ).reshape(-1)
        size = int(np.prod(shape)) if shape else 1
        if flat.size != size:
            raise invalid(f"{where}: \"data\" holds {flat.size} values, \"shape\" {shape} "
                          f"needs {size}")
        arrays[name] = to_array(flat.reshape(shape).tolist() if info.is_string
                                else flat.reshape(shape), info, where)
    wanted = body.get("outputs")
    names: list[str] | None = None
    if wanted is not None:
        if not isinstance(wanted, list) or not all(
                isinstance(o, dict) and isinstance(o.get("name"), str) for o in wanted):
            raise invalid("\"outputs\" must be a list of {\"name\": ...}")
        names = [o["name"] for o in wanted]
        unknown = sorted(set(names) - set(sig.outputs))
        if unknown:
            raise invalid(f"unknown outputs {unknown}; signature {sig.name} has "
                          f"{sorted(sig.outputs)}")
    return sig, arrays, names


def encode_infer(outputs: Arrays, sig: Signature, servable: Servable, request_id: Any,
                 names: list[str] | None) -> dict[str, Any]:
    result = []
    for name in names or sorted(outputs):
        array = outputs[name]
        result.append({
            "name": name,
            "datatype": V2_DATATYPES.get(sig.outputs[name].dtype, "BYTES"),
            "shape": list(array.shape),
            "data": to_json_value(array.reshape(-1)),
        })
    payload: dict[str, Any] = {"model_name": servable.name, "model_version": str(servable.version),
                               "outputs": result}
    if request_id is not None:
        payload["id"] = request_id
    return payload
