"""Model server latency and throughput vs calling the loaded SavedModel in-process, same run.

    python benchmarks/serving_bench.py [--seconds 5] [--repeats 3] [--model-dir DIR]
                                       [--client raw|aiohttp]

* Baseline: the SavedModel loaded in a process of its own, one image per call, in a loop
  (``serving_default`` signature call, and the same through a pre-traced concrete function),
  twice: with TensorFlow's default thread pools, and with the thread pools the server uses
  (``--intra``/``--inter``, default 1 and 1, as ``serving start --intra-op-threads
  --inter-op-threads``). Ratios are against the faster signature loop.
* Server: ``python -m serving start`` in a subprocess on loopback; the client sends the
  seed-001 request (one 28x28x1 image, ``/v1/models/NAME/versions/1:predict``) at concurrency
  1, 8 and 32 over keep-alive connections (``raw``: pre-encoded request bytes on asyncio
  streams, the cheapest client, so that it takes little of the cores it shares with the server;
  ``aiohttp``: aiohttp's client).
Each figure is the median of ``--repeats`` runs; the baselines and the server take turns.

``--capture``: instead, request capture's cost (issue 25). Two servers run side by side on the
same model, one with ``--capture-rate 1.0`` (every request written as a PredictionLog) and one
without; they take turns (which goes first alternates) at concurrency 1 (p50) and 32
(throughput), REST and gRPC. The target: with capture within 10% of without.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

from contracts.runtime import configure_tensorflow  # noqa: E402

configure_tensorflow()  # Keras 2 before TensorFlow

from contracts.signatures import SERVING_DEFAULT  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def build_model(path: Path) -> None:
    from modules.hparams import HParams
    from modules.model import build_model as build
    from modules.signatures import export_serving_model

    export_serving_model(build(HParams(epochs=1, augment=False)), str(path))


def baseline_worker(model_dir: Path, intra: int, inter: int) -> None:
    """Child process: load the model, then run ``baseline`` for each number of seconds read
    from stdin, printing one JSON line per run. ``intra``/``inter`` < 0: TF's defaults."""
    import tensorflow as tf

    if intra >= 0:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    loaded = tf.saved_model.load(str(model_dir))
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(baseline(loaded, float(line))), flush=True)


class Baseline:
    """A ``baseline_worker`` subprocess with its own TensorFlow thread settings."""

    def __init__(self, model_dir: Path, intra: int, inter: int) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--baseline-worker", str(model_dir), "--intra", str(intra),
             "--inter", str(inter)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
            text=True)
        self._read()

    def _read(self) -> dict[str, float]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the baseline process died")
        return dict(json.loads(line))

    def run(self, seconds: float) -> dict[str, float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{seconds}\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(30)


def baseline(loaded: object, seconds: float) -> dict[str, float]:
    import numpy as np
    import tensorflow as tf

    sig = loaded.signatures[SERVING_DEFAULT]  # type: ignore[attr-defined]
    traced = tf.function(lambda x: sig(images=x)["probabilities"],
                         input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32)]
                         ).get_concrete_function()
    image = np.random.default_rng(0).random((1, 28, 28, 1)).astype(np.float32)
    results: dict[str, float] = {}
    for name, call in (("signature", lambda: sig(images=tf.constant(image))["probabilities"]
                        .numpy()),
                       ("concrete", lambda: traced(tf.constant(image)).numpy())):
        for _ in range(50):
            call()
        latencies = []
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            t = time.perf_counter()
            call()
            latencies.append(time.perf_counter() - t)
        results[f"{name}_rps"] = len(latencies) / (time.perf_counter() - start)
        results[f"{name}_p50_ms"] = percentile(latencies, 50) * 1e3
    return results


async def load_aiohttp(url: str, body: bytes, concurrency: int,
                       seconds: float) -> tuple[float, list[float], int]:
    """The same load through aiohttp's client (about 0.4-0.9 ms of client CPU per request)."""
    import aiohttp

    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        failures += 1
                latencies.append(time.perf_counter() - t)

        for _ in range(20):  # warm connections and the model
            async with session.post(url, data=body, headers=headers) as r:
                await r.read()
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, latencies, failures


async def load_raw(url: str, body: bytes, concurrency: int,
                   seconds: float) -> tuple[float, list[float], int]:
    """``concurrency`` keep-alive HTTP/1.1 connections, each sending the pre-encoded request and
    reading the response (status line, Content-Length, body) with asyncio streams.

    The client shares the machine's cores with the server, so it should cost as little as
    possible: this is a few tens of microseconds per request, against 0.4-0.9 ms for aiohttp's
    client. The server still parses every request in full.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode() + body
    latencies: list[float] = []
    failures = 0

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        return head.startswith(b"HTTP/1.1 200")

    warm = 0
    all_warm, go = asyncio.Event(), asyncio.Event()
    deadline = [float("inf")]

    async def worker() -> None:
        nonlocal failures, warm
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for _ in range(5):  # warm the connection and the model
                await one(reader, writer)
            warm += 1
            if warm == concurrency:
                all_warm.set()
            await go.wait()
            while time.perf_counter() < deadline[0]:
                t = time.perf_counter()
                if not await one(reader, writer):
                    failures += 1
                latencies.append(time.perf_counter() - t)
        finally:
            writer.close()

    tasks = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    await asyncio.wait([asyncio.ensure_future(all_warm.wait()), *tasks],
                       return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:  # a worker that failed while warming up
        if task.done() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    start = time.perf_counter()
    deadline[0] = start + seconds
    go.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, latencies, failures


async def load_grpc(target: str, request: bytes, concurrency: int, seconds: float,
                    channels: int = 1) -> tuple[float, list[float], int]:
    """``concurrency`` callers sending a pre-serialized PredictRequest (no client-side protobuf
    work per call; the server still parses every request), spread over ``channels`` grpc.aio
    channels, each its own TCP connection (a local subchannel pool: grpc would otherwise share
    one connection between channels to the same target). With ``serving start --workers N``
    the kernel spreads connections, not calls, over the workers, so one channel reaches one."""
    from grpc import aio

    latencies: list[float] = []
    failures = 0
    opened = [aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
              for _ in range(max(1, min(channels, concurrency)))]
    try:
        calls = [ch.unary_unary("/tensorflow.serving.PredictionService/Predict") for ch in opened]
        for _ in range(20):  # warm the channels and the model
            await asyncio.gather(*(predict(request) for predict in calls))
        deadline = time.perf_counter() + seconds

        async def worker(predict: aio.UnaryUnaryMultiCallable) -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                try:
                    await predict(request)
                except aio.AioRpcError:
                    failures += 1
                latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(worker(calls[i % len(calls)]) for i in range(concurrency)))
        elapsed = time.perf_counter() - start
    finally:
        for ch in opened:
            await ch.close()
    return len(latencies) / elapsed, latencies, failures


def grpc_request() -> bytes:
    """One 28x28x1 image for ``serving_default``, as a serialized PredictRequest."""
    import numpy as np
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mnist"
    request.model_spec.signature_name = SERVING_DEFAULT
    dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in (1, 28, 28, 1)]
    request.inputs["images"].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims),
        tensor_content=np.full((1, 28, 28, 1), 0.5, np.float32).tobytes()))
    return request.SerializeToString()


def start_server(serving_dir: Path, port: int, window_ms: float,
                 extra: list[str] | None = None) -> subprocess.Popen[bytes]:
    import requests

    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving", "start", "--source", "directory", "--serving-dir",
         str(serving_dir), "--port", str(port), "--batch-window-ms", str(window_ms),
         "--log-level", "WARNING", *(extra or [])], cwd=str(ROOT), env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).ok:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not become ready within 180 s")


def model_tree(tmp: Path, model_dir: Path | None) -> tuple[Path, Path]:
    """A serving directory with ``model_dir`` (or a freshly built model) as mnist version 1."""
    serving_dir = tmp / "serving_model"
    version_dir = serving_dir / "mnist" / "1"
    if model_dir is not None:
        import shutil

        shutil.copytree(model_dir, version_dir)
    else:
        build_model(version_dir)
    return serving_dir, version_dir


def capture_case(args: argparse.Namespace) -> None:
    """Capture on (rate 1.0) vs off: c1 p50 and c32 throughput, REST and gRPC, turn by turn."""
    import requests

    from serving.server import free_port

    load = load_raw if args.client == "raw" else load_aiohttp
    with tempfile.TemporaryDirectory() as tmp:
        serving_dir, _ = model_tree(Path(tmp), args.model_dir)
        servers: dict[str, tuple[int, int, subprocess.Popen[bytes]]] = {}
        capture_dir = Path(args.capture_root or tmp) / "capture"
        capturing = [] if args.a_a else ["--capture-rate", "1.0", "--capture-dir",
                                         str(capture_dir)]
        for which, extra in (("off", []), ("on", capturing)):
            port, grpc_port = free_port(), free_port()
            servers[which] = (port, grpc_port, start_server(
                serving_dir, port, args.batch_window_ms,
                ["--grpc-port", str(grpc_port), "--capture-max-mb", "0", *extra]))
        image = [[[0.5] for _ in range(28)] for _ in range(28)]
        body = json.dumps({"signature_name": SERVING_DEFAULT, "instances": [image]}).encode()
        grpc_body = grpc_request()
        runs: dict[str, list[float]] = {}
        failures = 0
        try:
            for repeat in range(args.repeats):
                order = ["off", "on"] if repeat % 2 == 0 else ["on", "off"]
                for which in order:
                    port, grpc_port, _ = servers[which]
                    url = f"http://127.0.0.1:{port}/v1/models/mnist/versions/1:predict"
                    for c in (1, 32):
                        for api in ("rest", "grpc"):
                            before = cpu_seconds(servers[which][2].pid)
                            machine_before = machine_busy_seconds()
                            rps, latencies, failed = asyncio.run(
                                load(url, body, c, args.seconds) if api == "rest" else
                                load_grpc(f"127.0.0.1:{grpc_port}", grpc_body, c, args.seconds,
                                          args.grpc_channels))
                            after = cpu_seconds(servers[which][2].pid)
                            machine_after = machine_busy_seconds()
                            if c == 32:  # CPU per request: where capture's cost goes
                                served = max(1.0, rps * args.seconds)
                                for part in ("server", "writer"):
                                    runs.setdefault(f"{which}_{api}_{part}_cpu_us", []).append(
                                        (after[part] - before[part]) / served * 1e6)
                                # the whole machine's: the client, the kernel's writeback too
                                runs.setdefault(f"{which}_{api}_machine_cpu_us", []).append(
                                    (machine_after - machine_before) / served * 1e6)
                            failures += failed
                            key = (f"{which}_{api}_p50_ms" if c == 1 else f"{which}_{api}_c32_rps")
                            value = percentile(latencies, 50) * 1e3 if c == 1 else rps
                            runs.setdefault(key, []).append(value)
            metrics = requests.get(f"http://127.0.0.1:{servers['on'][0]}/metrics", timeout=10).text
            captured = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                           if line.startswith("serving_capture_records_total"))
            dropped = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                          if line.startswith(("serving_capture_dropped_total",
                                              "serving_capture_write_errors_total")))
        finally:
            for _, _, proc in servers.values():
                proc.terminate()
                proc.wait(30)
    med = {k: statistics.median(v) for k, v in runs.items()}
    if args.output == "json":
        print(json.dumps({"medians": med, "runs": runs, "failures": failures,
                          "captured": captured, "dropped_or_errors": dropped,
                          "repeats": args.repeats, "seconds": args.seconds}, indent=2))
        return
    if args.a_a:
        print("A/A run: neither server captures; the ratios below are this bench's noise")
    print(f"capture benchmark: median of {args.repeats} x {args.seconds:g} s per figure, "
          f"{os.cpu_count()} CPUs, {args.client} client, {failures} failed requests, "
          f"{captured:.0f} records captured, {dropped:.0f} dropped or lost")
    # paired: the median of each turn's on/off ratio (the two ran seconds apart), steadier than
    # the ratio of medians when the machine's load drifts
    print(f"{'measure':44} {'off':>9} {'rate 1.0':>9} {'ratio':>7} {'paired':>7} {'target':>8}")
    for api in ("rest", "grpc"):
        for key, what, target in ((f"{api}_p50_ms", "p50 latency, concurrency 1 (ms)", "<= 1.10x"),
                                  (f"{api}_c32_rps", "throughput, concurrency 32 (req/s)",
                                   ">= 0.90x")):
            off, on = med[f"off_{key}"], med[f"on_{key}"]
            paired = statistics.median(a / b for a, b in zip(runs[f"on_{key}"], runs[f"off_{key}"],
                                                             strict=True))
            print(f"{api} {what:39} {off:9.3f} {on:9.3f} {on / off:6.2f}x {paired:6.2f}x "
                  f"{target:>8}")
    # CPU per request is the capacity figure the other jobs on a shared machine disturb least:
    # requests per CPU-second with capture (server and writer) against without
    for api in ("rest", "grpc"):
        off_cpu, on_cpu = med[f"off_{api}_server_cpu_us"], med[f"on_{api}_server_cpu_us"]
        writer_cpu = med[f"on_{api}_writer_cpu_us"]
        print(f"{api} CPU per request at concurrency 32: server {off_cpu:.0f} us without capture,"
              f" {on_cpu:.0f} us with it, plus {writer_cpu:.0f} us in the writer process: "
              f"{off_cpu / (on_cpu + writer_cpu):.2f}x the requests per CPU-second")
        off_all, on_all = med[f"off_{api}_machine_cpu_us"], med[f"on_{api}_machine_cpu_us"]
        print(f"{api} the whole machine's CPU per request at concurrency 32 (client, servers, "
              f"kernel): {off_all:.0f} us without capture, {on_all:.0f} us with it: "
              f"{off_all / on_all:.2f}x")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (every process and the kernel) so far."""
    import psutil

    times = psutil.cpu_times()
    # Linux counts guest time inside user time already
    return (sum(times) - times.idle - getattr(times, "iowait", 0.0) - getattr(times, "guest", 0.0)
            - getattr(times, "guest_nice", 0.0))


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of a server process and of its children (the writer)."""
    import psutil

    def used(process: psutil.Process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    server = psutil.Process(pid)
    children = 0.0
    for child in server.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            children += used(child)
    return {"server": used(server), "writer": children}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="a SavedModel to use (default: build a fresh one)")
    parser.add_argument("--batch-window-ms", type=float, default=0.0)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--output", choices=["table", "json"], default="table")
    parser.add_argument("--client", choices=["raw", "aiohttp"], default="raw")
    parser.add_argument("--baseline-worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--intra", type=int, default=1,
                        help="TF intra-op threads of the tuned baseline (and of the server with "
                             "--server-threads)")
    parser.add_argument("--inter", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1,
                        help="serving start --workers N (processes sharing the port)")
    parser.add_argument("--grpc-channels", type=int, default=1,
                        help="gRPC connections the callers are spread over (1 for one caller)")
    parser.add_argument("--server-threads", action="store_true",
                        help="start the server with --intra-op-threads/--inter-op-threads too")
    parser.add_argument("--capture", action="store_true",
                        help="only the capture case: --capture-rate 1.0 vs off, same run")
    parser.add_argument("--a-a", action="store_true",
                        help="with --capture: start the second server without capture too, so "
                             "that the ratios show the bench's own noise (an A/A run)")
    parser.add_argument("--capture-root", type=Path, default=None,
                        help="with --capture: the folder the capturing server writes under "
                             "(default: the run's temporary folder), e.g. /dev/shm to leave "
                             "the disk out")
    args = parser.parse_args()
    if args.capture:
        capture_case(args)
        return
    if args.baseline_worker is not None:
        baseline_worker(args.baseline_worker, args.intra, args.inter)
        return

    from serving.server import free_port

    load = load_raw if args.client == "raw" else load_aiohttp
    intra, inter = args.intra, args.inter
    threads = ["--intra-op-threads", str(intra), "--inter-op-threads", str(inter)]

    with tempfile.TemporaryDirectory() as tmp:
        serving_dir, version_dir = model_tree(Path(tmp), args.model_dir)
        port, grpc_port = free_port(), free_port()
        baselines = {"default": Baseline(version_dir, -1, -1),
                     "server": Baseline(version_dir, intra, inter)}
        proc = start_server(serving_dir, port, args.batch_window_ms,
                            (threads if args.server_threads else [])
                            + ["--grpc-port", str(grpc_port), "--workers", str(args.workers)])
        grpc_body = grpc_request()
        try:
            url = f"http://127.0.0.1:{port}/v1/models/mnist/versions/1:predict"
            image = [[[0.5] for _ in range(28)] for _ in range(28)]
            body = json.dumps({"signature_name": SERVING_DEFAULT, "instances": [image]}).encode()
            levels = [int(c) for c in args.concurrency.split(",")]
            runs: dict[str, list[float]] = {}
            failures = 0
            for _ in range(args.repeats):
                # alternate baseline and server so drift from other load hits both alike
                for which, worker in baselines.items():
                    for key, value in worker.run(args.seconds).items():
                        runs.setdefault(f"{which}_{key}", []).append(value)
                for c in levels:
                    rps, latencies, failed = asyncio.run(load(url, body, c, args.seconds))
                    failures += failed
                    runs.setdefault(f"c{c}_rps", []).append(rps)
                    if c == 1:
                        runs.setdefault("p50_ms", []).append(percentile(latencies, 50) * 1e3)
                        runs.setdefault("p99_ms", []).append(percentile(latencies, 99) * 1e3)
                    rps, latencies, failed = asyncio.run(
                        load_grpc(f"127.0.0.1:{grpc_port}", grpc_body, c, args.seconds,
                                  args.grpc_channels))
                    failures += failed
                    runs.setdefault(f"grpc_c{c}_rps", []).append(rps)
                    if c == 1:
                        runs.setdefault("grpc_p50_ms", []).append(percentile(latencies, 50) * 1e3)
                        runs.setdefault("grpc_p99_ms", []).append(percentile(latencies, 99) * 1e3)
        finally:
            proc.terminate()
            proc.wait(30)
            for worker in baselines.values():
                worker.close()
    med = {k: statistics.median(v) for k, v in runs.items()}
    base = max(med["default_signature_rps"], med["server_signature_rps"])
    rows = []
    for which, text in (("default", "TF default threads"),
                        ("server", f"intra {intra}, inter {inter}")):
        rows += [
            (f"in-process loop, signature call, {text} (img/s)", med[f"{which}_signature_rps"],
             "", med[f"{which}_signature_rps"] / base),
            (f"in-process loop, concrete fn, {text} (img/s)", med[f"{which}_concrete_rps"], "",
             med[f"{which}_concrete_rps"] / base),
            (f"in-process p50 per call, {text} (ms)", med[f"{which}_signature_p50_ms"], "",
             None),
        ]
    if "p50_ms" in med:  # latencies are measured at concurrency 1 only (if it is in --concurrency)
        rows += [
            ("server p50 latency, concurrency 1 (ms)", med["p50_ms"], "<= 5", None),
            ("server p99 latency, concurrency 1 (ms)", med["p99_ms"], "<= 20", None),
        ]
    for c in levels:
        rows.append((f"server throughput, concurrency {c} (req/s)", med[f"c{c}_rps"],
                     ">= 1.0x" if c == 32 else "", med[f"c{c}_rps"] / base))
    if "grpc_p50_ms" in med:
        rows += [("gRPC p50 latency, concurrency 1 (ms)", med["grpc_p50_ms"], "<= 1.5", None),
                 ("gRPC p99 latency, concurrency 1 (ms)", med["grpc_p99_ms"], "<= 5", None)]
    for c in levels:
        rows.append((f"gRPC throughput, concurrency {c} (req/s)", med[f"grpc_c{c}_rps"],
                     ">= 1.5x" if c == 32 else "", med[f"grpc_c{c}_rps"] / base))
    if args.output == "json":
        print(json.dumps({"medians": med, "runs": runs, "failures": failures,
                          "repeats": args.repeats, "seconds": args.seconds,
                          "client": args.client, "cpus": os.cpu_count()}, indent=2))
        return
    print(f"serving benchmark: median of {args.repeats} x {args.seconds:g} s, "
          f"{os.cpu_count()} CPUs, batch window {args.batch_window_ms:g} ms, "
          f"{args.client} client, server threads "
          f"{f'intra {intra}, inter {inter}' if args.server_threads else 'TF default'}, "
          f"{args.workers} worker process(es), {args.grpc_channels} gRPC channels, "
          f"{failures} failed requests")
    print(f"{'measure':60} {'median':>10} {'target':>8} {'vs loop':>8}")
    for name, value, target, ratio in rows:
        ratio_text = f"{ratio:.2f}x" if ratio is not None else ""
        print(f"{name:60} {value:10.2f} {target:>8} {ratio_text:>8}")


if __name__ == "__main__":
    main()
