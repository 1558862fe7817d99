"""Capture per model call: a batch answering several requests is one frame, one record each.

The server counts and captures once per model call (``capture.after_call``, from the batcher),
not once per request; the writer cuts one ``PredictionLog`` per request out of the call's frame.
These tests check that this gives exactly the records the requests would have had alone.
"""

from __future__ import annotations

import asyncio
import functools
import random
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving import capture
from serving.batching import Batcher, BatchingConfig
from serving.capture_records import Item, encode_frame, frame_records
from serving.capture_worker import CaptureSettings
from serving.metrics import Metrics

from .capture_logs import finished_files, read_logs

MODEL = "mnist"
NAMES = [str(i) for i in range(10)]


def _alone(call: Item, rows: list[int]) -> list[Item]:
    """The call's requests as items of their own."""
    items, start = [], 0
    for n in rows:
        items.append(Item(call.model, call.version, call.signature, call.method,
                          {k: v[start:start + n] for k, v in call.inputs.items()},
                          {k: v[start:start + n] for k, v in call.outputs.items()}, call.at,
                          call.class_names))
        start += n
    return items


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_frame_of_several_requests_gives_the_records_they_would_have_alone(data) -> None:
    """Any rows per request (zero included), numeric, string and classify inputs, both writer
    paths: the records cut from one call's frame are byte for byte those of one frame per
    request."""
    rows = data.draw(st.lists(st.integers(0, 3), min_size=2, max_size=5), label="rows")
    kind = data.draw(st.sampled_from(["predict", "strings", "classify"]), label="kind")
    total = sum(rows)
    if kind == "predict":
        dtype = data.draw(st.sampled_from([np.float32, np.int64, np.uint8, np.float16]))
        rest = data.draw(st.lists(st.integers(1, 3), min_size=0, max_size=2), label="shape")
        inputs = {"images": (np.arange(total * int(np.prod(rest))) % 200).astype(dtype)
                  .reshape(total, *rest)}
    else:
        key = "examples" if kind == "classify" else "image_bytes"
        inputs = {key: np.array([b"x%d" % i for i in range(total)], dtype=object)}
    outputs = {"probabilities": np.linspace(0, 1, total * 3, dtype=np.float32).reshape(total, 3)}
    call = Item(MODEL, 2, "sig", "classify" if kind == "classify" else "predict", inputs,
                outputs, 1_796_000_000.5, ["a", "b", "c"])
    rate = data.draw(st.sampled_from([1.0, 0.25]), label="rate")
    alone = b"".join(b"".join(encode_frame(item)) for item in _alone(call, rows))
    together = b"".join(encode_frame(call, tuple(rows)))
    expected = frame_records(bytearray(alone), rate, fast=False)
    assert len(expected) == len(rows)
    assert frame_records(bytearray(together), rate) == expected
    assert frame_records(bytearray(together), rate, fast=False) == expected


def _servable() -> SimpleNamespace:
    return SimpleNamespace(name=MODEL, version=1, class_names=NAMES)


def _probabilities(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A stand-in model: class = the image's mean * 10, probability 0.91."""
    images = inputs["images"]
    classes = np.clip((images.reshape(len(images), -1).mean(axis=1) * 10).astype(int), 0, 9)
    probs = np.full((len(images), 10), 0.01, np.float32)
    probs[np.arange(len(images)), classes] = 0.91
    return {"probabilities": probs}


def test_a_batch_of_requests_is_counted_and_captured_once_per_model_call(
        tmp_path: Path, capture_writes: list[int]) -> None:
    """Five requests batched into one model call: one ``after_call`` on the model's thread (not
    the event loop, the server's busiest), one frame in one write,
    five records, each holding its own request's image and answer; /metrics counts five images.
    A request sent without an ``Answer`` (warm-up, say) is neither counted nor captured."""
    writes = capture_writes
    metrics = Metrics()
    writer = capture.CaptureWriter(CaptureSettings(str(tmp_path), rate=1.0), metrics).start()
    ctx = SimpleNamespace(metrics=metrics, capture=writer)
    calls: list[list[tuple[int, object]]] = []

    def on_answered(inputs, outputs, requests) -> None:  # noqa: ANN001
        assert threading.current_thread() is not threading.main_thread()  # the model's thread
        calls.append(requests)
        capture.after_call("serving_default", inputs, outputs, requests)

    batcher = Batcher(_probabilities, None, BatchingConfig(max_batch=64, window_s=0.05),
                      on_answered=on_answered)
    images = [np.full((n, 28, 28, 1), value, np.float32)
              for n, value in ((1, 0.05), (2, 0.35), (1, 0.55), (1, 0.75), (1, 0.95))]

    async def send() -> list[dict[str, np.ndarray]]:
        answer = capture.answer(ctx, _servable())
        requests = [batcher.submit({"images": x}, answer) for x in images]
        requests.append(batcher.submit({"images": np.zeros((1, 28, 28, 1), np.float32)}))
        return await asyncio.gather(*requests)

    answers = asyncio.run(send())
    writer.close()
    assert len(calls) == 1 and [rows for rows, _ in calls[0]] == [1, 2, 1, 1, 1, 1]
    assert len(writes) == 1  # one frame for the call, in one write
    logs = read_logs(finished_files(tmp_path))
    assert len(logs) == 5
    for log, x, answer in zip(logs, images, answers, strict=False):
        got = np.frombuffer(log.predict_log.request.inputs["images"].tensor_content, np.float32)
        np.testing.assert_array_equal(got.reshape(x.shape), x)
        probs = log.predict_log.response.outputs["probabilities"]
        np.testing.assert_array_equal(
            np.frombuffer(probs.tensor_content, np.float32).reshape(-1, 10),
            answer["probabilities"])
    rendered = metrics.render().decode()
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in rendered.splitlines()
                  if line.startswith("serving_predicted_class_total{"))
    assert counted == 6  # the six images of the five requests with an Answer, not the seventh


def test_sampling_keeps_whole_requests_of_a_batch(tmp_path: Path) -> None:
    """At a rate under 1 each request of a call is sampled on its own, whole: the records hold
    exactly the sampled requests' rows, in order, and the metrics still count every image."""
    metrics = Metrics()
    writer = capture.CaptureWriter(CaptureSettings(str(tmp_path), rate=0.5), metrics).start()
    writer._random = random.Random(7)  # noqa: SLF001 - the same draws as the replay below
    replay = random.Random(7)
    ctx = SimpleNamespace(metrics=metrics, capture=writer)
    answer = capture.answer(ctx, _servable())
    rows = [1, 3, 2, 1, 1, 2, 1, 1]
    inputs = {"images": np.arange(sum(rows) * 4, dtype=np.float32).reshape(sum(rows), 2, 2, 1)}
    outputs = _probabilities(inputs)
    capture.after_call("serving_default", inputs, outputs, [(n, answer) for n in rows])
    writer.close()
    kept = [replay.random() < 0.5 for _ in rows]
    assert 0 < sum(kept) < len(rows)  # the seed samples some, not all
    expected = [x["images"] for x, keep in zip(
        [{"images": inputs["images"][s:s + n]} for s, n in
         zip(np.cumsum([0, *rows[:-1]]), rows, strict=True)], kept, strict=True) if keep]
    logs = read_logs(finished_files(tmp_path))
    assert len(logs) == len(expected)
    for log, x in zip(logs, expected, strict=True):
        got = np.frombuffer(log.predict_log.request.inputs["images"].tensor_content, np.float32)
        np.testing.assert_array_equal(got.reshape(x.shape), x)
        assert log.log_metadata.sampling_config.sampling_rate == 0.5
    rendered = metrics.render().decode()
    assert f'serving_prediction_confidence_count{{model="{MODEL}",version="1"}} {sum(rows)}.0' \
        in rendered


def test_a_failing_hook_never_fails_the_requests(caplog: pytest.LogCaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``after_call`` swallows its own failure (logged once): the batch is answered."""
    monkeypatch.setattr(capture, "_hook_failed", False)  # log this test's failure
    broken = SimpleNamespace(metrics=SimpleNamespace(on_predictions=None), capture=None)
    batcher = Batcher(_probabilities, None, BatchingConfig(max_batch=8, window_s=0.02),
                      on_answered=functools.partial(capture.after_call, "serving_default"))

    async def send() -> list[dict[str, np.ndarray]]:
        answer = capture.answer(broken, _servable())
        return await asyncio.gather(*(batcher.submit(
            {"images": np.full((1, 2, 2, 1), 0.5, np.float32)}, answer) for _ in range(3)))

    answers = asyncio.run(send())
    assert len(answers) == 3 and all(a["probabilities"].shape == (1, 10) for a in answers)
    assert "capture/prediction metrics failed" in caplog.text
