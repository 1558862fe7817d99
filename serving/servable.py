"""One loaded model version: its signatures, their metadata, and batched calls into TensorFlow.

``load_servable(path, ...)`` loads a SavedModel directory, reads its class dictionary and
signature defs, warms each signature up (so a model that cannot run fails here, at load time,
and never in a request), and wraps every signature in a ``Batcher``.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contracts.dictionary import read_model_dictionary
from contracts.runtime import configure_tensorflow
from contracts.signatures import SAVED_MODEL_FILE, SERVING_DEFAULT
from serving import capture, warmup
from serving.batching import Answered, Arrays, Batcher, BatchingConfig
from serving.errors import ServingError, invalid

configure_tensorflow()  # Keras 2 before anything imports TensorFlow (imported lazily below)

# TF dtype enum names (as TF Serving prints them) -> numpy dtype; strings are numpy objects (bytes)
_DTYPES: dict[str, Any] = {
    "DT_FLOAT": np.float32, "DT_DOUBLE": np.float64, "DT_HALF": np.float16,
    "DT_INT8": np.int8, "DT_INT16": np.int16, "DT_INT32": np.int32, "DT_INT64": np.int64,
    "DT_UINT8": np.uint8, "DT_UINT16": np.uint16, "DT_UINT32": np.uint32, "DT_UINT64": np.uint64,
    "DT_BOOL": np.bool_, "DT_STRING": object,
}
INIT_OP = "__saved_model_init_op"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # "DT_FLOAT", ...
    shape: tuple[int | None, ...] | None  # None = unknown rank; None dims are -1

    @property
    def np_dtype(self) -> Any:
        return _DTYPES.get(self.dtype, object)

    @property
    def is_string(self) -> bool:
        return self.dtype == "DT_STRING"

    @property
    def is_float(self) -> bool:
        return self.dtype in ("DT_FLOAT", "DT_DOUBLE", "DT_HALF")


@dataclass
class Signature:
    name: str
    method_name: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]
    call: Callable[[Arrays], Arrays]  # synchronous, thread-safe
    batcher: Batcher | None = field(default=None, repr=False)
    # after each model call: the answered requests' metrics and capture (serving.capture)
    on_answered: Answered | None = field(default=None, repr=False)

    async def run(self, inputs: Arrays, answer: capture.Answer | None = None) -> Arrays:
        """The model's outputs for ``inputs``. ``answer`` (``capture.answer``): count the
        answer in /metrics and capture it when sampled, once per model call."""
        if self.batcher is not None:
            return await self.batcher.submit(inputs, answer)
        outputs = self.call(inputs)
        if self.on_answered is not None and answer is not None:
            first = next(iter(inputs.values()), None)
            rows = int(np.shape(first)[0]) if np.ndim(first) else 1
            self.on_answered(inputs, outputs, [(rows, answer)])
        return outputs


@dataclass
class Servable:
    """A loaded version. Held by reference: requests keep it alive while it is being unloaded."""

    name: str
    version: int
    path: str
    class_names: list[str]
    signatures: dict[str, Signature]
    signature_defs: dict[str, Any]  # TF Serving's JSON of the SignatureDefMap
    loaded_at: float = 0.0
    handle: Any = field(default=None, repr=False)  # the loaded SavedModel object, kept alive
    warmup_records: int = 0  # assets.extra/tf_serving_warmup_requests replayed (serving/warmup.py)

    def signature(self, name: str | None) -> Signature:
        key = name or SERVING_DEFAULT
        sig = self.signatures.get(key)
        if sig is None:
            raise invalid(
                f"Serving signature name: \"{key}\" not found in signature def; model "
                f"{self.name} version {self.version} has {sorted(self.signatures)}"
            )
        return sig

    def signature_with_inputs(self, names: set[str]) -> Signature:
        for sig in self.signatures.values():
            if set(sig.inputs) == names:
                return sig
        raise invalid(
            f"no signature of model {self.name} version {self.version} takes inputs "
            f"{sorted(names)}; signatures take "
            + ", ".join(f"{s.name}: {sorted(s.inputs)}" for s in self.signatures.values())
        )


def read_signature_defs(path: str) -> dict[str, Any]:
    """The SavedModel's signature defs as TF Serving prints them (proto JSON, defaults included)."""
    from google.protobuf import json_format
    from tensorflow.python.saved_model import loader_impl

    saved_model = loader_impl.parse_saved_model(path)
    defs = saved_model.meta_graphs[0].signature_def
    return {
        key: json_format.MessageToDict(
            defs[key], preserving_proto_field_name=True, including_default_value_fields=True
        )
        for key in sorted(defs)
    }


def _tensor_info(key: str, info: dict[str, Any]) -> TensorInfo:
    shape_proto = info.get("tensor_shape", {})
    shape: tuple[int | None, ...] | None
    if shape_proto.get("unknown_rank"):
        shape = None
    else:
        dims = [int(d.get("size", -1)) for d in shape_proto.get("dim", [])]
        shape = tuple(None if d < 0 else d for d in dims)
    return TensorInfo(key, info.get("dtype", "DT_INVALID"), shape)


def _make_call(fn: Any, outputs: list[str]) -> Callable[[Arrays], Arrays]:
    import tensorflow as tf

    call_fn = fn
    keys: list[str] | None = None
    try:
        # The signature called with keyword tensors spends ~0.2 ms per call in Python (argument
        # structuring, nest flattening). A concrete function over it taking positional tensors
        # and returning a tuple skips that: 1.1-1.25x the in-process images/s at batch 1.
        _, spec = fn.structured_input_signature
        keys = sorted(spec)
        traced = tf.function(
            lambda *xs: tuple(fn(**dict(zip(keys, xs, strict=True)))[k] for k in outputs),
            input_signature=[spec[k] for k in keys],
        ).get_concrete_function()
        call_fn = traced
    except Exception:  # noqa: BLE001 - unusual signature: call it as it is
        keys = None

    if keys is not None:
        positional = keys

        def call(inputs: Arrays) -> Arrays:
            result = call_fn(*[tf.constant(inputs[k]) for k in positional])
            return {k: v.numpy() for k, v in zip(outputs, result, strict=True)}

        return call

    def call_kwargs(inputs: Arrays) -> Arrays:
        # object arrays of bytes go in as they are (astype(bytes) would strip trailing NULs)
        tensors = {k: tf.constant(v) for k, v in inputs.items()}
        result = fn(**tensors)
        return {k: result[k].numpy() for k in outputs}

    return call_kwargs


def _warmup_inputs(sig: Signature) -> Arrays | None:
    """One all-zero example per input when every input is numeric with a known shape."""
    arrays: Arrays = {}
    for key, info in sig.inputs.items():
        if info.is_string or info.shape is None or any(d is None for d in info.shape[1:]):
            return None
        arrays[key] = np.zeros((1, *info.shape[1:]), dtype=info.np_dtype)
    return arrays


def load_servable(
    name: str,
    version: int,
    path: str,
    executor: Executor | None = None,
    batching: BatchingConfig | None = None,
    on_batch: Callable[[str, int, str, int], None] | None = None,
    alone: Callable[[], bool] | None = None,
) -> Servable:
    """Load ``path`` (a SavedModel directory) as version ``version`` of ``name``.

    Raises ``ServingError(FAILED_PRECONDITION)`` naming the directory when it is not a loadable
    SavedModel. ``alone``: see ``Batcher`` (a lone small request runs on the event loop).
    """
    import tensorflow as tf

    if not os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
        raise ServingError(
            "FAILED_PRECONDITION",
            f"{path} holds no saved_model.pb; a version directory must be a whole SavedModel",
        )
    try:
        loaded = tf.saved_model.load(path)
        signature_defs = read_signature_defs(path)
        class_names = read_model_dictionary(path)
    except Exception as exc:  # noqa: BLE001 - any load failure is reported in status
        raise ServingError(
            "FAILED_PRECONDITION", f"could not load the SavedModel in {path}: {exc}"
        ) from exc
    signatures: dict[str, Signature] = {}
    for key, fn in loaded.signatures.items():
        sig_def = signature_defs.get(key, {})
        inputs = {k: _tensor_info(k, v) for k, v in sorted(sig_def.get("inputs", {}).items())}
        outputs = {k: _tensor_info(k, v) for k, v in sorted(sig_def.get("outputs", {}).items())}
        sig = Signature(key, sig_def.get("method_name", ""), inputs, outputs,
                        _make_call(fn, list(outputs)),
                        on_answered=functools.partial(capture.after_call, key))
        warm = _warmup_inputs(sig)
        if warm is not None:
            try:
                sig.call(warm)
            except Exception as exc:  # noqa: BLE001
                raise ServingError(
                    "FAILED_PRECONDITION",
                    f"the SavedModel in {path} failed its warm-up call of {key}: {exc}",
                ) from exc
        batchable = all(
            info.shape is not None and len(info.shape) >= 1 and info.shape[0] is None
            for info in (*inputs.values(), *outputs.values())
        )
        if batching is not None and batchable:
            hook = None
            if on_batch is not None:
                def hook(rows: int, _key: str = key) -> None:
                    on_batch(name, version, _key, rows)
            sig.batcher = Batcher(sig.call, executor, batching, hook, alone, sig.on_answered)
        elif executor is not None:  # no batch dimension: never joined, never sliced
            sig.batcher = Batcher(sig.call, executor, BatchingConfig(
                max_batch=1, max_inflight=8, chunk_rows=2**62, parallel_slices=1),
                on_answered=sig.on_answered)
        signatures[key] = sig
    warmed = warmup.replay(path, signatures)  # TF Serving's warm-up file, before AVAILABLE
    return Servable(name, version, path, class_names, signatures, signature_defs, time.time(), loaded,
                    warmed)
