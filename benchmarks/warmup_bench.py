"""First request after a deploy, with and without the InfraValidator's warm-up requests.

    python benchmarks/warmup_bench.py [--rounds 3] [--steady 200]

The pipeline's InfraValidator (``RequestSpec.make_warmup``) pushes the model with
``assets.extra/tf_serving_warmup_requests``: the eval examples it sent, as PredictLogs through
``serving_examples``; ``serving start`` replays them while loading a version, before it is
AVAILABLE (``serving/warmup.py``). For each variant, in turns, a fresh ``serving start`` serves
version 1 (the model without the file) and answers 50 requests, so the process itself is warm;
then version 2 (the variant) is deployed (its directory renamed into place). Once gRPC
``GetModelStatus`` says version 2 is AVAILABLE, one Predict to it through ``serving_examples``
(one tf.Example) is timed, then ``--steady`` more give the steady p50. Target: first request <= 2x steady p50 with
the warm-up. Also printed: how long the deploy took to become AVAILABLE (the warm-up's cost).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine  # noqa: E402
from benchmarks.serving_bench import build_model, percentile  # noqa: E402

MODEL = "warm"
WARMUP_REQUESTS = 5  # what the pipeline's InfraValidator sends (pipeline.pipeline.INFRA_EXAMPLES)
TARGET = 2.0


def example_bytes(seed: int) -> bytes:
    import numpy as np
    import tensorflow as tf

    from contracts.examples import IMAGE_KEY, IMAGE_PIXELS

    pixels = np.random.default_rng(seed).integers(0, 256, IMAGE_PIXELS).tolist()
    return tf.train.Example(features=tf.train.Features(feature={
        IMAGE_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=pixels))})
    ).SerializeToString()


def predict_request(seed: int) -> object:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from contracts.signatures import INPUT_EXAMPLES, SERVING_EXAMPLES

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = SERVING_EXAMPLES
    request.inputs[INPUT_EXAMPLES].CopyFrom(tf.make_tensor_proto([example_bytes(seed)]))
    return request


def write_warmup(model_dir: Path) -> None:
    """The file TFX's InfraValidator writes: PredictLogs of the requests it sent."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = model_dir / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for seed in range(WARMUP_REQUESTS):
            writer.write(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=predict_request(1000 + seed))
            ).SerializeToString())


def _wait_available(status: object, version: int) -> None:
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2

    states = get_model_status_pb2.ModelVersionStatus
    ask = get_model_status_pb2.GetModelStatusRequest()
    ask.model_spec.name = MODEL
    ask.model_spec.version.value = version
    while True:
        try:
            found = [s.state for s in status.GetModelStatus(ask).model_version_status]  # type: ignore[attr-defined]
        except grpc.RpcError:
            found = []
        if found == [states.AVAILABLE]:
            return
        if states.END in found:
            raise RuntimeError(f"version {version} failed to load")
        time.sleep(0.01)


def _deploy(model_dir: Path, serving: Path, version: int) -> float:
    """Copy ``model_dir`` in as ``version`` (renamed into place, as the Pusher and registry do)."""
    staging = serving / MODEL / f".staging-{version}"
    shutil.copytree(model_dir, staging)
    started = time.perf_counter()
    os.rename(staging, serving / MODEL / str(version))
    return started


def _timed(predict: object, request: object) -> float:
    started = time.perf_counter()
    predict.Predict(request, timeout=60)  # type: ignore[attr-defined]
    return (time.perf_counter() - started) * 1000


def one_deploy(base_dir: Path, model_dir: Path, steady: int, delay_s: float) -> dict[str, float]:
    """A server already serving version 1 (requests answered, so the process itself is warm)
    is given version 2 = ``model_dir``; the first request to version 2 is timed."""
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    from pipeline.components.infra_validator_runner import free_port

    serving = Path(tempfile.mkdtemp(prefix="warmup-bench-"))
    (serving / MODEL).mkdir()
    grpc_port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving", "start", "--source", "directory", "--serving-dir",
         str(serving), "--port", str(free_port()), "--grpc-port", str(grpc_port),
         "--poll-s", "0.05", "--log-level", "WARNING"], cwd=str(ROOT), env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        grpc.channel_ready_future(channel).result(timeout=180)
        status = model_service_pb2_grpc.ModelServiceStub(channel)
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        _deploy(base_dir, serving, 1)
        _wait_available(status, 1)
        for seed in range(50):
            request = predict_request(seed)
            request.model_spec.version.value = 1  # type: ignore[attr-defined]
            _timed(predict, request)
        deployed = _deploy(model_dir, serving, 2)
        _wait_available(status, 2)
        available_s = time.perf_counter() - deployed
        time.sleep(delay_s)
        requests = [predict_request(seed) for seed in range(steady + 1)]
        for request in requests:
            request.model_spec.version.value = 2  # type: ignore[attr-defined]
        first_ms = _timed(predict, requests[0])
        times = [_timed(predict, request) for request in requests[1:]]
        channel.close()
        return {"first_ms": first_ms, "p50_ms": percentile(times, 50),
                "available_s": available_s}
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        shutil.rmtree(serving, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steady", type=int, default=200)
    parser.add_argument("--delay-s", type=float, default=0.0,
                        help="wait this long after AVAILABLE before the first request (the "
                             "server settles its heap, a full GC, just after a load)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from contracts.runtime import configure_tensorflow

    configure_tensorflow()
    work = Path(tempfile.mkdtemp(prefix="warmup-models-"))
    try:
        cold, warm = work / "cold", work / "warm"
        build_model(cold)
        shutil.copytree(cold, warm)
        write_warmup(warm)
        runs: dict[str, list[dict[str, float]]] = {"without warm-up": [], "with warm-up": []}
        for round_ in range(args.rounds):  # rotated order: neither variant always goes first
            order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
            for name in order:
                runs[name].append(one_deploy(cold, warm if name == "with warm-up" else cold,
                                             args.steady, args.delay_s))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = {}
    for name, results in runs.items():
        first = statistics.median(r["first_ms"] for r in results)
        p50 = statistics.median(r["p50_ms"] for r in results)
        table[name] = {"first_ms": first, "steady_p50_ms": p50, "ratio": first / p50,
                       "available_s": statistics.median(r["available_s"] for r in results),
                       "rounds": results}
    if args.json:
        print(json.dumps({"machine": machine(), "results": table}, indent=2))
        return
    print(f"First gRPC Predict (serving_examples, 1 example) to a newly deployed version; {machine()}")
    print(f"median of {args.rounds} fresh servers each; first request {args.delay_s:g} s after "
          f"AVAILABLE; steady = {args.steady} requests after")
    print(f"{'':18} {'first ms':>9} {'steady p50 ms':>14} {'first/p50':>10} {'AVAILABLE s':>12}")
    for name, row in table.items():
        print(f"{name:18} {row['first_ms']:9.2f} {row['steady_p50_ms']:14.2f} "
              f"{row['ratio']:9.1f}x {row['available_s']:12.2f}")
    ok = table["with warm-up"]["ratio"] <= TARGET
    print(f"target: first <= {TARGET:g}x steady p50 with warm-up: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
