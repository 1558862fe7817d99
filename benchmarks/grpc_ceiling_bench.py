"""How close ``serving start``'s gRPC API comes to what Python's gRPC stack allows here, same run.

    python benchmarks/grpc_ceiling_bench.py [--seconds 3] [--rounds 5] [--concurrency 1,32]

Issue 13's targets (gRPC p50 <= 1.5 ms at concurrency 1, throughput at concurrency 32 >= 1.5x
the in-process one-image loop) are measured by ``serving_bench.py``. This benchmark asks a
different question: could *any* servicer written on ``grpc.aio`` meet them on this machine? It
runs, each in a process of its own on loopback and measured in turns with ``serving_bench``'s
gRPC client (``grpc.aio``, a pre-serialized one-image PredictRequest):

* ``empty``: a ``grpc.aio`` servicer answering every Predict with a fixed response: gRPC's own
  work on both sides and nothing else (the transport floor);
* ``bare``: parses the request, batches concurrent calls, runs the model on a thread, answers,
  and does nothing more (no shape, dtype or value checks, no auth, metrics, deadline, drain,
  versions or reload): the least a batched model servicer does;
* ``serving start``, with its defaults;
* the in-process loop of ``serving_bench`` (one image per call, the faster of TF's default
  thread pools and one intra-op thread), the baseline of the throughput target;
* the model alone as a server at concurrency 1 calls it: one image after an idle gap as long as
  a loopback round trip (0.5 ms), when the core's caches and TF's pool threads have gone cold.

The client shares the two cores with the server, as in ``serving_bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving_bench import (  # noqa: E402
    Baseline,
    build_model,
    grpc_request,
    load_grpc,
    percentile,
    start_server,
)

P50_TARGET_MS = 1.5
THROUGHPUT_TARGET = 1.5


def _child_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")


def serve_reference(kind: str, port: int, model_dir: Path) -> None:
    """Child process: the ``empty`` or ``bare`` servicer on ``port`` until SIGTERM."""
    import grpc
    from grpc import aio

    if kind == "bare":
        from contracts.runtime import configure_tensorflow

        configure_tensorflow()
    import numpy as np
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2

    fixed = predict_pb2.PredictResponse()
    fixed.outputs["probabilities"].float_val.extend([0.1] * 10)
    fixed_bytes = fixed.SerializeToString()

    async def empty(request: bytes, context: object) -> bytes:
        return fixed_bytes

    handler = empty
    if kind == "bare":
        import concurrent.futures

        import tensorflow as tf

        from contracts.signatures import SERVING_DEFAULT

        loaded = tf.saved_model.load(str(model_dir))  # kept: the functions need its variables
        signature = loaded.signatures[SERVING_DEFAULT]
        _, spec = signature.structured_input_signature
        (key,) = spec
        output = next(iter(signature.structured_outputs))
        traced = tf.function(lambda x: signature(**{key: x})[output],
                             input_signature=[spec[key]]).get_concrete_function()
        pool = concurrent.futures.ThreadPoolExecutor(1)
        queue: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
        running = False

        def model(x: np.ndarray, _keep: object = loaded) -> np.ndarray:
            return traced(tf.constant(x)).numpy()

        model(np.zeros((1, 28, 28, 1), np.float32))

        async def drain() -> None:
            nonlocal running, queue
            loop = asyncio.get_running_loop()
            while queue:
                batch, queue = queue, []
                outputs = await loop.run_in_executor(
                    pool, model, np.concatenate([x for x, _ in batch]))
                start = 0
                for x, future in batch:
                    future.set_result(outputs[start:start + len(x)])
                    start += len(x)
            running = False

        async def bare(request: bytes, context: object) -> bytes:
            nonlocal running
            tensor = predict_pb2.PredictRequest.FromString(request).inputs[key]
            x = np.frombuffer(tensor.tensor_content, np.float32).reshape(
                [d.size for d in tensor.tensor_shape.dim])
            loop = asyncio.get_running_loop()
            future: asyncio.Future[np.ndarray] = loop.create_future()
            queue.append((x, future))
            if not running:
                running = True
                loop.create_task(drain())
            y = await future
            response = predict_pb2.PredictResponse()
            out = response.outputs[output]
            out.dtype = types_pb2.DT_FLOAT
            for size in y.shape:
                out.tensor_shape.dim.add(size=size)
            out.float_val.extend(y.ravel().tolist())
            return response.SerializeToString()

        handler = bare

    async def main() -> None:
        server = aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "tensorflow.serving.PredictionService",
            {"Predict": grpc.unary_unary_rpc_method_handler(handler)}),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()

    asyncio.run(main())


def model_after_gap(model_dir: Path, intra: int, gap_s: float = 0.0005,
                    calls: int = 1000) -> None:
    """Child process: p50 ms of one one-image call made ``gap_s`` after the previous one."""
    from contracts.runtime import configure_tensorflow

    configure_tensorflow()
    import numpy as np
    import tensorflow as tf

    from contracts.signatures import SERVING_DEFAULT

    if intra > 0:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    signature = tf.saved_model.load(str(model_dir)).signatures[SERVING_DEFAULT]
    image = tf.constant(np.full((1, 28, 28, 1), 0.5, np.float32))
    for _ in range(100):
        signature(images=image)
    latencies = []
    for _ in range(calls):
        time.sleep(gap_s)
        started = time.perf_counter()
        signature(images=image)["probabilities"].numpy()
        latencies.append(time.perf_counter() - started)
    print(percentile(latencies, 50) * 1e3)


def start_reference(kind: str, port: int, model_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port),
                             "--model-dir", str(model_dir)], stdout=subprocess.PIPE,
                            env=_child_env(), text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError(f"the {kind} reference server did not start")
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--serve", choices=["empty", "bare", "gap"], help=argparse.SUPPRESS)
    parser.add_argument("--intra", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "gap":
        model_after_gap(args.model_dir, args.intra)
        return
    if args.serve:
        serve_reference(args.serve, args.port, args.model_dir)
        return

    from benchmarks.machine import machine
    from serving.server import free_port

    levels = [int(c) for c in args.concurrency.split(",")]
    request = grpc_request()
    runs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        serving_dir = Path(tmp) / "serving_model"
        version_dir = serving_dir / "mnist" / "1"
        build_model(version_dir)
        baselines = [Baseline(version_dir, -1, -1), Baseline(version_dir, 1, 1)]
        targets: dict[str, str] = {}
        procs: list[subprocess.Popen[str] | subprocess.Popen[bytes]] = []
        try:
            for kind in ("empty", "bare"):
                port = free_port()
                procs.append(start_reference(kind, port, version_dir))
                targets[kind] = f"127.0.0.1:{port}"
            port, grpc_port = free_port(), free_port()
            procs.append(start_server(serving_dir, port, 0.0, ["--grpc-port", str(grpc_port)]))
            targets["serving start"] = f"127.0.0.1:{grpc_port}"
            for _ in range(args.rounds):  # in turns, so the machine's drift hits all alike
                loop_rps = max(b.run(args.seconds)["signature_rps"] for b in baselines)
                runs.setdefault("loop_rps", []).append(loop_rps)
                for intra in (0, 1):
                    out = subprocess.run(
                        [sys.executable, __file__, "--serve", "gap", "--model-dir",
                         str(version_dir), "--intra", str(intra)], check=True, text=True,
                        capture_output=True, env=_child_env())
                    runs.setdefault(f"model after gap ms, intra {intra}", []).append(
                        float(out.stdout.split()[-1]))
                for name, target in targets.items():
                    for c in levels:
                        rps, latencies, failures = asyncio.run(
                            load_grpc(target, request, c, args.seconds))
                        if failures:
                            raise RuntimeError(f"{name}: {failures} failed calls")
                        runs.setdefault(f"{name} c{c} rps", []).append(rps)
                        runs.setdefault(f"{name} c{c} p50 ms", []).append(
                            percentile(latencies, 50) * 1e3)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
            for b in baselines:
                b.close()
    med = {key: statistics.median(values) for key, values in runs.items()}
    loop = med["loop_rps"]
    print(f"gRPC ceiling: median of {args.rounds} rounds x {args.seconds:g} s, grpc.aio client "
          f"on the same cores; in-process loop (signature call, the faster thread setting, as "
          f"in serving_bench) {loop:.0f} img/s")
    print(f"{'server':16} " + " ".join(f"{f'c{c} p50 ms':>11} {f'c{c} req/s':>11} "
                                       f"{'vs loop':>8}" for c in levels))
    for name in targets:
        cells = []
        for c in levels:
            rps = med[f"{name} c{c} rps"]
            cells.append(f"{med[f'{name} c{c} p50 ms']:11.2f} {rps:11.0f} {rps / loop:7.2f}x")
        print(f"{name:16} " + " ".join(cells))
    print("the model alone, one image 0.5 ms after the previous call (p50): "
          f"{med['model after gap ms, intra 0']:.2f} ms with TF's thread pools, "
          f"{med['model after gap ms, intra 1']:.2f} ms with one intra-op thread")
    print(f"targets: p50 at concurrency 1 <= {P50_TARGET_MS} ms; concurrency 32 >= "
          f"{THROUGHPUT_TARGET}x the loop")
    print(machine())
    if args.json:
        Path(args.json).write_text(json.dumps({"medians": med, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
