"""The performance paths give the same answers as the general ones.

* ``codec._regular_numbers`` (flat conversion of regular nested number lists) vs ``np.asarray``:
  the same arrays, and the same errors for everything else.
* The servable's positional concrete function vs calling the signature with keywords.
* ``manager.settle_heap``: frozen, yet garbage from an unloaded version is still collected.
* The manager freezes a loaded version before routing it, and settles the whole heap only
  ``SETTLE_AFTER_S`` after a change, not as the new version's first requests come in.
"""

from __future__ import annotations

import gc
import json
import math
import time
import weakref
from typing import Any

import numpy as np
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from serving import codec
from serving.errors import ServingError
from serving.manager import ModelManager, settle_heap
from serving.servable import TensorInfo, load_servable

from .conftest import Server

IMAGES = TensorInfo("images", "DT_FLOAT", (None, 28, 28, 1))
INFOS = [IMAGES, TensorInfo("x", "DT_FLOAT", (None, 3)), TensorInfo("x", "DT_INT64", (None, 2)),
         TensorInfo("x", "DT_DOUBLE", (None,)), TensorInfo("x", "DT_FLOAT", (None, None, 2)),
         TensorInfo("x", "DT_INT32", (None, 2))]


def _image(value: Any = 0.5) -> list[Any]:
    return [[[value] for _ in range(28)] for _ in range(28)]


def _outcome(value: Any, info: TensorInfo, fast: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(codec, "_regular_numbers", lambda value, ndim: None)
        try:
            array = codec.to_array(value, info, "instances")
        except ServingError as exc:
            return ("error", exc.http_status, exc.message)
    return ("ok", array.dtype.str, array.shape, array.tobytes())


def _same(value: Any, info: TensorInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _outcome(value, info, True, monkeypatch) == _outcome(value, info, False, monkeypatch)


bad_image = _image()
bad_image[3][4] = [0.1, 0.2]
CASES: list[Any] = [
    [_image()], [_image(0.25), _image(1)], [_image(0)], [_image(True)], [_image("0.5")],
    [_image(None)], [_image(math.nan)], [_image(math.inf)], [_image(10**30)], [_image(2**63)],
    [_image(-(2**63))], [bad_image], [_image()[0]], [[_image()]], [], [[]], 0.5, "x",
    [{"b64": "AAAA"}], [_image({"b64": "AAAA"})], [[1, 2, 3]], [[1.5, 2, 3]], [[1, 2]],
    [[1, 2], [3, 4]], [[1, 2], [3]], [[1, 2], 3], [[1, 2], [3, 4.0]], [1, 2.5], [[10**400, 1]],
    [[0.5, 10**400]], [[[1, 2]], [[3, 4], [5, 6]]], [[[1, 2]]], [[True, False]],
]


@pytest.mark.parametrize("value", CASES, ids=range(len(CASES)))
@pytest.mark.parametrize("info", INFOS, ids=lambda i: f"{i.dtype}{i.shape}")
def test_fast_conversion_equals_general(value: Any, info: TensorInfo,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _same(value, info, monkeypatch)


def test_fast_path_is_taken_for_images() -> None:
    array = codec._regular_numbers([_image(0.5), _image(1)], 4)
    assert array is not None and array.shape == (2, 28, 28, 1) and array.dtype == np.float64


leaves = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                   st.booleans(), st.none(), st.text(max_size=2))
nested = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4), max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(value=nested, index=st.integers(0, len(INFOS) - 1))
def test_fast_conversion_equals_general_on_anything(value: Any, index: int) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        _same(value, INFOS[index], monkeypatch)


@settings(max_examples=100, deadline=None)
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=4), seed=st.integers(0, 2**16),
       ints=st.booleans())
def test_fast_conversion_of_regular_arrays(shape: list[int], seed: int, ints: bool) -> None:
    rng = np.random.default_rng(seed)
    data = rng.integers(-5, 5, shape) if ints else rng.normal(size=shape)
    info = TensorInfo("x", "DT_FLOAT", (None, *shape[1:]))
    with pytest.MonkeyPatch.context() as monkeypatch:
        _same(data.tolist(), info, monkeypatch)
    assert codec._regular_numbers(data.tolist(), len(shape)) is not None


BODIES = [
    {"instances": [_image()]},
    {"signature_name": "serving_default", "instances": [_image(0.1), _image(0.9)]},
    {"inputs": [_image(0.3)]},
    {"inputs": {"images": [_image(1)]}},
    {"instances": [{"images": _image(0.2)}]},
    {"instances": [_image(True)]},
    {"instances": [_image("0.5")]},
    {"instances": [bad_image]},
    {"instances": [_image()[0]]},
    {"instances": []},
    {"instances": [_image(10**30)]},
    {"instances": [_image()], "inputs": [_image()]},
    {"signature_name": "nope", "instances": [_image()]},
]


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_fast_and_general_paths_answer_alike_over_http(server: Server, body: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"{server.url}/v1/models/root_mnist/versions/1:predict"
    data = json.dumps(body).encode()
    fast = requests.post(url, data=data, timeout=30)
    monkeypatch.setattr(codec, "_regular_numbers", lambda value, ndim: None)
    general = requests.post(url, data=data, timeout=30)
    assert (fast.status_code, fast.content) == (general.status_code, general.content)
    nan = data.replace(b"0.5", b"NaN", 1)
    if nan != data:  # NaN literals go through the json fallback parser: same answers too
        monkeypatch.undo()
        fast = requests.post(url, data=nan, timeout=30)
        monkeypatch.setattr(codec, "_regular_numbers", lambda value, ndim: None)
        general = requests.post(url, data=nan, timeout=30)
        assert fast.status_code == 400
        assert (fast.status_code, fast.content) == (general.status_code, general.content)


def test_positional_concrete_call_equals_signature_call(saved_model) -> None:
    import tensorflow as tf

    servable = load_servable("m", 1, str(saved_model))
    rng = np.random.default_rng(1)
    images = rng.random((3, 28, 28, 1)).astype(np.float32)
    for key, sig in servable.signatures.items():
        fn = servable.handle.signatures[key]
        if key == "serving_default":
            inputs = {"images": images}
        elif "image_bytes" in sig.inputs:
            png = tf.io.encode_png(tf.constant((images[0] * 255).astype(np.uint8))).numpy()
            arr = np.empty(1, dtype=object)
            arr[:] = [png]
            inputs = {"image_bytes": arr}
        else:
            inputs = codec.decode_classify(
                {"examples": [{"image": [int(v) for v in (images[0] * 255).reshape(-1)]}]},
                servable)[1]
        got = sig.call(inputs)
        want = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        assert sorted(got) == sorted(sig.outputs)
        for name, value in got.items():
            np.testing.assert_array_equal(value, want[name].numpy())


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_settle_heap_freezes_but_collects_what_was_dropped() -> None:
    try:
        obj = _Cycle()
        ref = weakref.ref(obj)
        settle_heap()
        assert gc.get_freeze_count() > 0
        del obj  # a cycle that was frozen: only the next settle can collect it
        gc.collect()
        assert ref() is not None
        settle_heap()
        assert ref() is None
    finally:
        gc.unfreeze()


def test_manager_freezes_after_a_load_and_unfreezes_on_stop(source) -> None:
    from serving.servable import Servable

    source.deploy("m", 1)
    manager = ModelManager(source, lambda n, v, p: Servable(n, v, p, [], {}, {}),
                           poll_interval=0.01, freeze_heap=True)
    try:
        gc.unfreeze()
        manager.start()
        assert manager.wait_for(lambda: gc.get_freeze_count() > 0, 10)
    finally:
        manager.stop()
    assert gc.get_freeze_count() == 0


def test_a_loaded_version_is_frozen_before_it_is_routed_and_the_full_settle_waits(
        source, monkeypatch: pytest.MonkeyPatch) -> None:
    from serving import manager as manager_module
    from serving.servable import Servable

    settled: list[float] = []
    monkeypatch.setattr(manager_module, "SETTLE_AFTER_S", 0.5)
    monkeypatch.setattr(manager_module, "settle_heap",
                        lambda: settled.append(time.monotonic()))
    frozen_when_routed: list[bool] = []
    held: dict[int, _Cycle] = {}

    def load(name: str, version: int, path: str) -> Servable:
        held[version] = _Cycle()  # a cycle the load allocated, like a model's objects
        return Servable(name, version, path, [], {}, {})

    def on_change(name: str, version: int, state: str) -> None:
        if state == "AVAILABLE":  # the version is routed in this sync step, after this event
            tracked = {id(o) for o in gc.get_objects()}  # frozen objects are not listed
            frozen_when_routed.append(id(held[version]) not in tracked)

    source.deploy("m", 1)
    manager = ModelManager(source, load, poll_interval=0.01, freeze_heap=True,
                           on_change=on_change)
    try:
        gc.unfreeze()
        manager.start()
        assert manager.wait_for(lambda: bool(frozen_when_routed), 10)
        loaded_at = time.monotonic()
        assert frozen_when_routed == [True]
        assert manager.wait_for(lambda: bool(settled), 10)
        assert settled[0] - loaded_at >= 0.4  # not at once: SETTLE_AFTER_S later
    finally:
        manager.stop()
