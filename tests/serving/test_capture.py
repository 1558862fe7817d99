"""Request capture (issue 25, the server's half) against real ``serving start`` processes.

Three servers start together (their start-up is most of the time): one capturing every request
with a short time rotation and gRPC on, one sampling half of them into small files under a small
disk budget, and one whose capture directory cannot be created. Every request of every test is
checked to succeed: capture must never fail one.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from contracts import capture as layout
from serving.server import free_port
from tests.server_process import wait_ready

from .capture_logs import finished_files, read_logs

ROOT = Path(__file__).resolve().parents[2]
MODEL = "mnist"
KB = 1024


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    rest: str
    grpc: str | None
    capture_dir: Path
    log: Path

    def metric(self, name: str, **labels: str) -> float:
        text = requests.get(f"{self.rest}/metrics", timeout=10).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v
                                               for k, v in labels.items()):
                    total += sample.value
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


def _launch(root: Path, saved_model: Path, capture_dir: Path, *flags: str,
            grpc_on: bool = False) -> Running:
    serving_dir = root / "serving_model"
    shutil.copytree(saved_model, serving_dir / MODEL / "1")
    rest = free_port()
    grpc_port = free_port() if grpc_on else 0
    log = root / "server.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "start", "--source", "directory", "--serving-dir",
             str(serving_dir), "--port", str(rest), "--grpc-port", str(grpc_port),
             "--grace-s", "5", "--capture-dir", str(capture_dir), *flags],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Running(proc, f"http://127.0.0.1:{rest}",
                   f"127.0.0.1:{grpc_port}" if grpc_on else None, capture_dir, log)


def _wait_ready(running: Running) -> None:
    wait_ready(running.rest, running.proc, 180, log=running.log)


@dataclass
class Servers:
    every: Running     # rate 1.0, files rotate every 0.5 s, gRPC on
    budget: Running    # rate 0.5, 20 KB files, a 100 KB budget
    broken: Running    # the capture directory is a regular file, gRPC on


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, saved_model: Path) -> Iterator[Servers]:
    roots = [tmp_path_factory.mktemp(name) for name in ("every", "budget", "broken")]
    blocker = roots[2] / "capture"
    blocker.write_text("a file where the capture directory should be\n")
    started = Servers(
        _launch(roots[0], saved_model, roots[0] / "capture", "--capture-rate", "1.0",
                "--capture-rotate-seconds", "0.5", grpc_on=True),
        _launch(roots[1], saved_model, roots[1] / "capture", "--capture-rate", "0.5",
                "--capture-rotate-mb", str(20 / 1024), "--capture-max-mb", str(100 / 1024)),
        _launch(roots[2], saved_model, blocker, "--capture-rate", "1.0", grpc_on=True))
    try:
        for running in (started.every, started.budget, started.broken):
            _wait_ready(running)
        yield started
    finally:
        for running in (started.every, started.budget, started.broken):
            running.stop()


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)  # polling for the writer thread
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def tag_of(log) -> float:  # noqa: ANN001
    """The grey value every pixel of a test request's first image has."""
    import tensorflow as tf

    if log.WhichOneof("log_type") == "classify_log":
        example = log.classify_log.request.input.example_list.examples[0]
        return example.features.feature["image"].int64_list.value[0] / 255.0
    inputs = log.predict_log.request.inputs
    if "image_bytes" in inputs:
        png = tf.make_ndarray(inputs["image_bytes"]).ravel()[0]
        return float(np.asarray(Image.open(io.BytesIO(png)))[0, 0]) / 255.0
    return float(tf.make_ndarray(inputs["images"]).ravel()[0])


def probabilities_of(log) -> np.ndarray:  # noqa: ANN001
    import tensorflow as tf

    if log.WhichOneof("log_type") == "classify_log":
        return np.asarray([[c.score for c in row.classes]
                           for row in log.classify_log.response.result.classifications])
    return tf.make_ndarray(log.predict_log.response.outputs["probabilities"])


# -- sending requests ---------------------------------------------------------------------------
def image(value: float, batch: int = 1) -> list:
    return np.full((batch, 28, 28, 1), value, np.float32).tolist()


def png_b64(grey: int) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.full((28, 28), grey, np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def ok(response: requests.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def grpc_calls(target: str, predict_value: float, classify_grey: int) -> dict[float, np.ndarray]:
    import tensorflow as tf
    from tensorflow_serving.apis import (
        classification_pb2,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.inputs["images"].CopyFrom(
            tf.make_tensor_proto(np.full((1, 28, 28, 1), predict_value, np.float32)))
        predicted = tf.make_ndarray(stub.Predict(request, timeout=30).outputs["probabilities"])
        classify = classification_pb2.ClassificationRequest()
        classify.model_spec.name = MODEL
        classify.input.example_list.examples.add().features.feature[
            "image"].int64_list.value.extend([classify_grey] * 784)
        result = stub.Classify(classify, timeout=30).result
    classified = np.asarray([[c.score for c in row.classes] for row in result.classifications])
    return {predict_value: predicted, classify_grey / 255.0: classified}


def every_protocol(url: str) -> dict[float, tuple[str, np.ndarray]]:
    """One request per REST protocol, each with its own grey value: value -> (what, answer)."""
    sent: dict[float, tuple[str, np.ndarray]] = {}
    tfs = ok(requests.post(f"{url}/v1/models/{MODEL}:predict", timeout=30,
                           json={"instances": image(0.1, batch=2)}))
    sent[0.1] = ("tfs predict", np.asarray(tfs["predictions"]))
    grey = 51  # 0.2
    png = ok(requests.post(f"{url}/v1/models/{MODEL}/versions/1:predict", timeout=30,
                           json={"signature_name": "serving_images",
                                 "instances": [{"b64": png_b64(grey)}]}))
    sent[grey / 255.0] = ("tfs predict png", np.asarray(png["predictions"]))
    grey = 77  # 0.302
    classified = ok(requests.post(f"{url}/v1/models/{MODEL}:classify", timeout=30,
                                  json={"examples": [{"image": [grey] * 784}]}))
    sent[grey / 255.0] = ("tfs classify",
                          np.asarray([[p for _, p in row] for row in classified["results"]]))
    v2 = ok(requests.post(f"{url}/v2/models/{MODEL}/infer", timeout=30, json={"inputs": [
        {"name": "images", "shape": [1, 28, 28, 1], "datatype": "FP32",
         "data": [0.4] * 784}]}))
    sent[0.4] = ("kserve v2", np.asarray(v2["outputs"][0]["data"]).reshape(1, -1))
    sagemaker = ok(requests.post(
        f"{url}/invocations", timeout=30, json={"instances": image(0.5)},
        headers={"X-Amzn-SageMaker-Custom-Attributes": f"tfs-model-name={MODEL}"}))
    sent[0.5] = ("sagemaker", np.asarray(sagemaker["predictions"]))
    return sent


# -- the tests ----------------------------------------------------------------------------------
def test_every_protocol_is_captured_as_prediction_logs(servers: Servers) -> None:
    running = servers.every
    started = time.time()
    sent = every_protocol(running.rest)
    assert running.grpc is not None
    for value, answer in grpc_calls(running.grpc, 0.6, 179).items():
        sent[value] = ("grpc", answer)
    # nothing stops the server: the 0.5 s time rotation alone makes the files readable
    logs = wait_for(lambda: (lambda got: got if len(got) >= len(sent) else None)(
        read_logs(finished_files(running.capture_dir))), 15, "every request in finished files")
    assert isinstance(logs, list)
    by_tag = {round(tag_of(log), 3): log for log in logs}
    assert {round(v, 3) for v in sent} <= set(by_tag), (sorted(by_tag), sorted(sent))
    kinds = {}
    for value, (what, answer) in sent.items():
        log = by_tag[round(value, 3)]
        spec = log.log_metadata.model_spec
        assert (spec.name, spec.version.value) == (MODEL, 1), what
        assert log.log_metadata.sampling_config.sampling_rate == 1.0
        assert started - 1 <= log.log_metadata.timestamp_secs <= time.time() + 1
        np.testing.assert_allclose(probabilities_of(log), answer, atol=1e-6, err_msg=what)
        kinds[what] = (log.WhichOneof("log_type"), spec.signature_name)
    assert kinds["tfs predict"] == ("predict_log", "serving_default")
    assert kinds["tfs predict png"] == ("predict_log", "serving_images")
    assert kinds["tfs classify"] == ("classify_log", "serving_examples")
    assert kinds["kserve v2"] == kinds["sagemaker"] == ("predict_log", "serving_default")
    assert kinds["grpc"] in {("predict_log", "serving_default"),
                             ("classify_log", "serving_examples")}
    # the model's input exactly as it received it: float32 [N, 28, 28, 1] in [0, 1]
    import tensorflow as tf

    images = tf.make_ndarray(by_tag[0.1].predict_log.request.inputs["images"])
    assert images.dtype == np.float32 and images.shape == (2, 28, 28, 1)
    np.testing.assert_array_equal(images, np.full((2, 28, 28, 1), 0.1, np.float32))
    wait_for(lambda: running.metric("serving_capture_records_total", model=MODEL,
                                    version="1") >= len(sent), 5, "the writer's counts")
    assert running.metric("serving_capture_write_errors_total") == 0


def test_time_rotation_starts_a_new_file(servers: Servers) -> None:
    running = servers.every
    ok(requests.post(f"{running.rest}/v1/models/{MODEL}:predict", timeout=30,
                     json={"instances": image(0.7)}))
    first = wait_for(lambda: [f for f in finished_files(running.capture_dir)
                              if any(round(tag_of(g), 3) == 0.7 for g in read_logs([f]))],
                     10, "the 0.7 request in a finished file")
    ok(requests.post(f"{running.rest}/v1/models/{MODEL}:predict", timeout=30,
                     json={"instances": image(0.8)}))
    second = wait_for(lambda: [f for f in finished_files(running.capture_dir)
                               if any(round(tag_of(g), 3) == 0.8 for g in read_logs([f]))],
                      10, "the 0.8 request in a finished file")
    assert isinstance(first, list) and isinstance(second, list)
    assert first[0] != second[0]  # a request after a rotation goes to a new file
    assert first[0].name < second[0].name  # names sort by time and sequence


def test_confidence_and_class_metrics_have_bounded_labels(servers: Servers) -> None:
    running = servers.every
    before = running.metric("serving_prediction_confidence_count", model=MODEL, version="1")
    answer = ok(requests.post(f"{running.rest}/v1/models/{MODEL}:predict", timeout=30,
                              json={"instances": image(0.9, batch=3)}))
    predicted = np.asarray(answer["predictions"]).argmax(axis=1)
    assert running.metric("serving_prediction_confidence_count", model=MODEL,
                          version="1") == before + 3
    text = requests.get(f"{running.rest}/metrics", timeout=10).text
    classes = {s.labels["class"] for f in text_string_to_metric_families(text)
               for s in f.samples if s.name == "serving_predicted_class_total"}
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert classes <= set(names) and names[int(predicted[0])] in classes
    low = running.metric("serving_prediction_confidence_bucket", model=MODEL, version="1",
                         le="0.1")
    everything = running.metric("serving_prediction_confidence_bucket", model=MODEL,
                                version="1", le="+Inf")
    assert 0 <= low <= everything == before + 3


def test_sampling_rotation_by_size_and_the_disk_budget(servers: Servers) -> None:
    running = servers.budget
    sent = 300
    session = requests.Session()
    for i in range(sent):
        ok(session.post(f"{running.rest}/v1/models/{MODEL}:predict", timeout=30,
                        json={"instances": image((i % 100) / 100.0)}))
    time.sleep(0.5)  # the writer's last polls (every 0.05 s)
    captured = running.metric("serving_capture_records_total", model=MODEL, version="1")
    assert 0.35 * sent <= captured <= 0.65 * sent, captured  # rate 0.5 (binomial sd ~ 8.7)
    assert running.metric("serving_capture_dropped_total") == 0
    record = 3_400  # one image's PredictionLog (784 floats + 10 probabilities + spec)
    rotate, budget = 20 * KB, 100 * KB
    for path in finished_files(running.capture_dir):
        assert path.stat().st_size < rotate + 2 * record, path
    assert running.metric("serving_capture_deleted_files_total") >= 1
    folder = Path(layout.version_dir(str(running.capture_dir), MODEL, 1))
    # the file being written is finished when the server stops: send until one is open
    for _ in range(100):
        if list(folder.glob("*" + layout.PARTIAL_SUFFIX)):
            break
        ok(session.post(f"{running.rest}/v1/models/{MODEL}:predict", timeout=30,
                        json={"instances": image(0.5)}))
        time.sleep(0.06)  # one writer poll
    partial = list(folder.glob("*" + layout.PARTIAL_SUFFIX))
    assert len(partial) == 1
    running.stop()
    assert running.proc.returncode == 0
    assert not list(folder.glob("*" + layout.PARTIAL_SUFFIX))
    assert (folder / partial[0].name[:-len(layout.PARTIAL_SUFFIX)]).is_file()
    files = finished_files(running.capture_dir)
    total = sum(p.stat().st_size for p in files)
    assert total <= budget, (total, budget)
    # the oldest were deleted: what is left is the newest files, in sequence
    seqs = [int(p.name.split("-")[-1].split(".")[0]) for p in files]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and seqs[0] > 1
    assert len(read_logs(files)) >= 1


def test_an_unwritable_directory_answers_every_request(servers: Servers) -> None:
    running = servers.broken
    sent = every_protocol(running.rest)
    assert running.grpc is not None
    sent.update({v: ("grpc", a) for v, a in grpc_calls(running.grpc, 0.6, 179).items()})
    records = 7  # the five REST requests and two gRPC calls, all answered (ok() and stubs)
    assert len(sent) == records
    wait_for(lambda: running.metric("serving_capture_write_errors_total") == records, 10,
             "every lost record counted")
    assert running.metric("serving_capture_records_total", model=MODEL, version="1") == 0
    for _ in range(20):
        ok(requests.post(f"{running.rest}/v1/models/{MODEL}:predict", timeout=30,
                         json={"instances": image(0.3)}))
    wait_for(lambda: running.metric("serving_capture_write_errors_total") == records + 20, 10,
             "the later errors counted")
    running.stop()
    log = running.log.read_text()
    assert log.count("capture: cannot write to") == 1, log[-3000:]  # logged once
    assert running.capture_dir.is_file()  # nothing was written over it


def _reference(item, rate: float):  # noqa: ANN001, ANN202 - PredictionLog
    """The record built with the official proto classes, for comparison."""
    import tensorflow as tf
    from tensorflow.core.example import example_pb2
    from tensorflow_serving.apis import prediction_log_pb2

    expected = prediction_log_pb2.PredictionLog()
    meta = expected.log_metadata
    meta.model_spec.name, meta.model_spec.signature_name = item.model, item.signature
    meta.model_spec.version.value = item.version
    meta.sampling_config.sampling_rate = rate
    meta.saved_model_tags.append("serve")
    meta.timestamp_secs = int(item.at)
    if item.method == "classify":
        log = expected.classify_log
        log.request.model_spec.CopyFrom(meta.model_spec)
        for serialized in item.inputs["examples"]:
            log.request.input.example_list.examples.add().CopyFrom(
                example_pb2.Example.FromString(serialized))
        log.response.model_spec.CopyFrom(meta.model_spec)
        for row in item.outputs["probabilities"].tolist():
            classes = log.response.result.classifications.add().classes
            for name, score in zip(item.class_names, row, strict=True):
                classes.add(label=name, score=score)
        return expected
    log = expected.predict_log
    log.request.model_spec.CopyFrom(meta.model_spec)
    log.response.model_spec.CopyFrom(meta.model_spec)
    for key, array in item.inputs.items():
        log.request.inputs[key].CopyFrom(tf.make_tensor_proto(array))
    for key, array in item.outputs.items():
        log.response.outputs[key].CopyFrom(tf.make_tensor_proto(array))
    return expected


def test_records_written_by_hand_parse_as_the_proto_classes_build_them() -> None:
    """``capture_records.record`` writes the wire format without the proto classes (for speed,
    and so the writer process needs no TensorFlow): every dtype a signature may take, and
    classify logs, must parse to what the classes build."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from serving.capture_records import DTYPES, Item, record

    for dtype, enum in DTYPES.items():
        assert tf.dtypes.as_dtype(dtype).as_datatype_enum == enum, dtype
    item = Item(
        "root_mnist", 300, "serving_images", "predict",
        {"image_bytes": np.array([b"\x89PNG\r\n", b"x" * 200, b""], dtype=object),
         "ids": np.arange(-2, 3, dtype=np.int64), "empty": np.zeros((2, 0), np.uint8),
         "images": np.linspace(0, 1, 784 * 2, dtype=np.float32).reshape(2, 28, 28, 1)},
        {"probabilities": np.full((3, 10), 0.1, np.float32)}, 1_796_000_000.7)
    parsed = prediction_log_pb2.PredictionLog.FromString(record(item, 0.25))
    reference = _reference(item, 0.25)
    assert parsed.log_metadata == reference.log_metadata
    for key in item.inputs:  # tensor_content vs typed fields: compare the values
        np.testing.assert_array_equal(tf.make_ndarray(parsed.predict_log.request.inputs[key]),
                                      item.inputs[key])
        assert parsed.predict_log.request.inputs[key].dtype == \
            reference.predict_log.request.inputs[key].dtype
    np.testing.assert_array_equal(
        tf.make_ndarray(parsed.predict_log.response.outputs["probabilities"]),
        item.outputs["probabilities"])
    example = tf.train.Example()
    example.features.feature["image"].int64_list.value.extend([7] * 784)
    classify = Item("m", 2, "serving_examples", "classify",
                    {"examples": np.array([example.SerializeToString()] * 2, dtype=object)},
                    {"probabilities": np.array([[0.25, 0.75], [1.0, 0.0]], np.float32)},
                    1_796_000_001.0, ["cat", "dog"])
    parsed = prediction_log_pb2.PredictionLog.FromString(record(classify, 1.0))
    assert parsed == _reference(classify, 1.0)


NUMERIC = [np.float32, np.float64, np.int64, np.int32, np.uint8, np.int8, np.float16, np.bool_]


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_the_writers_fast_path_writes_the_same_bytes_as_the_general_one(data) -> None:
    """``frame_records`` builds predict records from a template per header, straight from the
    frame's bytes; classify, strings and odd frames take the general path. Same bytes either way,
    and both parse (the general path's bytes are checked against the proto classes above)."""
    from serving.capture_records import Item, encode_frame, frame_records

    def array(draw_dtype: type) -> np.ndarray:
        shape = data.draw(st.lists(st.integers(0, 4), min_size=0, max_size=3), label="shape")
        values = np.arange(int(np.prod(shape)), dtype=np.float64) * 1.7 - 3
        return values.astype(draw_dtype).reshape(shape)

    items = []
    for n in range(data.draw(st.integers(1, 4), label="frames")):
        kind = data.draw(st.sampled_from(["predict", "strings", "classify"]), label="kind")
        at = data.draw(st.sampled_from([1_796_000_000.7, 0.0, 1e10]), label="at")
        outputs = {"probabilities": np.full((2, 3), 0.25, np.float32)}
        if kind == "classify":
            inputs = {"examples": np.array([b"ex1", b"ex2"], dtype=object)}
        elif kind == "strings":
            inputs = {"image_bytes": np.array([b"\x89PNG", b""], dtype=object)}
        else:
            inputs = {f"in{k}": array(data.draw(st.sampled_from(NUMERIC), label="dtype"))
                      for k in range(data.draw(st.integers(1, 3), label="inputs"))}
            outputs["classes"] = array(np.int64)
        items.append(Item(f"m{n % 2}", n + 1, "sig", kind if kind == "classify" else "predict",
                          inputs, outputs, at, ["a", "b", "c"]))
    frames = b"".join(b"".join(encode_frame(item)) for item in items)
    rate = data.draw(st.sampled_from([1.0, 0.125]), label="rate")
    fast = frame_records(bytearray(frames), rate)
    general = frame_records(bytearray(frames), rate, fast=False)
    assert fast == general and all(isinstance(data, bytes) for *_, data in fast)


def test_a_full_pipe_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    """The request path never waits for the writer: offered faster than it can write, records
    are dropped and counted, each offer returns at once, and what was sent is written whole."""
    from serving.capture import CaptureSettings, CaptureWriter

    counted: dict[str, int] = {}

    class Counts:
        def on_capture(self, what: str, model: str, version: int, count: int = 1) -> None:
            counted[what] = counted.get(what, 0) + count

    writer = CaptureWriter(CaptureSettings(str(tmp_path), rate=1.0), Counts()).start()
    images = {"images": np.full((64, 28, 28, 1), 0.5, np.float32)}  # 200 KB a request
    outputs = {"probabilities": np.full((64, 10), 0.1, np.float32)}
    slowest, sent = 0.0, 0
    for _ in range(400):  # 80 MB offered at once: far more than the pipe holds
        started = time.perf_counter()
        sent += writer.offer(MODEL, 1, "serving_default", "predict", images, outputs, [],
                             time.time())
        slowest = max(slowest, time.perf_counter() - started)
    writer.close()
    assert counted.get("dropped", 0) == 400 - sent > 0
    assert slowest < 0.25, slowest  # a write into a pipe that does not block
    assert counted.get("captured", 0) == sent == len(read_logs(finished_files(tmp_path)))


def test_frames_offered_in_one_loop_pass_go_out_in_one_write(
        tmp_path: Path, capture_writes: list[int]) -> None:
    """On the event loop (REST and gRPC handlers), the frames of one pass of the loop (a batch
    of predictions answers its requests together) are sent by one writev at the pass's end, not
    one per request; every one of them is written, and a pass's drop is counted per frame."""
    import asyncio

    from serving.capture import CaptureSettings, CaptureWriter

    counted: dict[str, int] = {}

    class Counts:
        def on_capture(self, what: str, model: str, version: int, count: int = 1) -> None:
            counted[what] = counted.get(what, 0) + count

    writes = capture_writes
    writer = CaptureWriter(CaptureSettings(str(tmp_path), rate=1.0), Counts()).start()
    images = {"images": np.full((1, 28, 28, 1), 0.5, np.float32)}
    outputs = {"probabilities": np.full((1, 10), 0.1, np.float32)}

    async def one_pass(into: CaptureWriter, count: int) -> None:
        for _ in range(count):  # no await in between: one pass of the loop
            assert into.offer(MODEL, 1, "serving_default", "predict", images, outputs, [],
                              time.time())
        assert writes == []  # nothing sent before the pass ends
        await asyncio.sleep(0)

    asyncio.run(one_pass(writer, 16))
    assert len(writes) == 1
    writer.close()
    assert counted.get("captured", 0) == 16 == len(read_logs(finished_files(tmp_path)))
    assert counted.get("dropped", 0) == 0

    writes.clear()
    gone = CaptureWriter(CaptureSettings(str(tmp_path / "gone"), rate=1.0), Counts())
    asyncio.run(one_pass(gone, 5))  # never started: as if its process were gone
    assert counted["dropped"] == 5

    # a pass's frames go out early once they reach a pipe's worth (MAX_BATCH_BYTES): what a
    # partial write leaves pending stays bounded
    big = CaptureWriter(CaptureSettings(str(tmp_path / "big"), rate=1.0), Counts()).start()
    images = {"images": np.full((64, 28, 28, 1), 0.5, np.float32)}  # 200 KB a frame
    outputs = {"probabilities": np.full((64, 10), 0.1, np.float32)}

    async def big_pass() -> int:
        for _ in range(8):
            big.offer(MODEL, 1, "serving_default", "predict", images, outputs, [], time.time())
        during = len(writes)
        await asyncio.sleep(0)
        return during

    counted.clear()
    assert asyncio.run(big_pass()) >= 1  # sent within the pass, before its end
    big.close()
    assert counted.get("captured", 0) + counted.get("dropped", 0) == 8
    assert counted.get("captured", 0) == len(read_logs(finished_files(tmp_path / "big")))


def test_prediction_metrics_count_small_and_large_requests_alike() -> None:
    """One-image requests are counted without numpy (its per-call cost), big ones with it: the
    histogram and class counts must not depend on how a batch was split into requests."""
    from serving.metrics import Metrics

    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    probs = np.random.default_rng(0).dirichlet(np.full(10, 0.3), 200).astype(np.float32)
    whole, split = Metrics(), Metrics()
    whole.on_predictions(MODEL, 1, probs, names)
    for row in probs:
        split.on_predictions(MODEL, 1, row[None, :], names)

    def counts(metrics: Metrics) -> dict[tuple, float]:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(metrics.render().decode())
                for s in f.samples if s.name.startswith(("serving_prediction_confidence_b",
                                                         "serving_predicted_class"))}

    assert counts(whole) == counts(split)
    expected = np.bincount(probs.argmax(axis=1), minlength=10)
    got = {dict(labels)["class"]: value for (name, labels), value in counts(whole).items()
           if name == "serving_predicted_class_total"}
    assert got == {names[i]: float(n) for i, n in enumerate(expected) if n}


def test_a_full_disk_loses_only_the_records_it_cut_and_capture_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC in the middle of a record: the records written whole stay readable (the file is
    cut back to them and finished), the lost ones are counted, and once space is free again the
    next requests are captured in a new file."""
    import errno

    from serving import capture_worker
    from serving.capture_records import Item, encode_frame, frame_records, record, tfrecord

    room = {"bytes": 0}  # what the "disk" still takes; None: unlimited

    class SmallDisk(io.FileIO):
        def write(self, data) -> int:  # noqa: ANN001 - a bytes-like object, as FileIO takes
            left = room["bytes"]
            if left is not None and len(data) > left:
                if left == 0:
                    raise OSError(errno.ENOSPC, "No space left on device")
                data = bytes(data)[:left]  # a short write, then ENOSPC on the rest
            written = super().write(data) or 0
            if left is not None:
                room["bytes"] = left - written
            return written

    monkeypatch.setattr(capture_worker, "open", lambda path, mode, buffering: SmallDisk(path, "wb"),
                        raising=False)
    files = capture_worker.CaptureFiles(capture_worker.CaptureSettings(str(tmp_path), rate=1.0))

    def item(n: int) -> Item:
        return Item(MODEL, 1, "serving_default", "predict",
                    {"images": np.full((1, 28, 28, 1), n / 10, np.float32)},
                    {"probabilities": np.full((1, 10), 0.1, np.float32)}, 1_796_000_000.0 + n)

    def write(*numbers: int) -> None:  # as the writer's run loop does: frames in, records out
        frames = b"".join(b"".join(encode_frame(item(n))) for n in numbers)
        files.write_records(frame_records(bytearray(frames), 1.0))

    one = len(tfrecord(record(item(0), 1.0)))
    room["bytes"] = 2 * one + one // 2  # two records and half of a third fit
    write(0, 1, 2, 3)  # one batch, one write: all four lost
    assert files.counts[("write_errors",)] == 4
    assert read_logs(finished_files(tmp_path)) == []  # nothing half-written is finished
    assert not list(tmp_path.rglob("*.tmp"))
    room["bytes"] = 2 * one + one // 2
    write(4)
    write(5)
    write(6)  # the disk fills in the middle of this one
    assert files.counts[("captured", MODEL, "1")] == 2
    assert files.counts[("write_errors",)] == 5
    kept = read_logs(finished_files(tmp_path))  # cut back to the two whole records
    assert [log.log_metadata.timestamp_secs for log in kept] == [1_796_000_004, 1_796_000_005]
    room["bytes"] = None  # space freed: the next request opens a new file
    write(7)
    files.rotate(time.time(), everything=True)
    assert files.counts[("captured", MODEL, "1")] == 3
    assert len(read_logs(finished_files(tmp_path))) == 3 and len(finished_files(tmp_path)) == 2
