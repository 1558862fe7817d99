"""Model server latency and throughput vs calling the loaded SavedModel in-process, same run.

    python benchmarks/serving_bench.py [--seconds 5] [--repeats 3] [--model-dir DIR]

* Baseline: the SavedModel loaded in this process, one image per call, in a loop
  (``serving_default`` signature call, and the same through a pre-traced concrete function).
* Server: ``python -m serving start`` in a subprocess on loopback; an aiohttp client sends the
  seed-001 request (one 28x28x1 image, ``/v1/models/NAME/versions/1:predict``) at concurrency
  1, 8 and 32.
Each figure is the median of ``--repeats`` runs; ratios are server / in-process loop.
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

import modules  # noqa: E402,F401  (Keras 2 before TensorFlow)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def build_model(path: Path) -> None:
    from modules.hparams import HParams
    from modules.model import build_model as build
    from modules.signatures import export_serving_model

    export_serving_model(build(HParams(epochs=1, augment=False)), str(path))


def baseline(model_dir: Path, seconds: float) -> dict[str, float]:
    import numpy as np
    import tensorflow as tf

    loaded = tf.saved_model.load(str(model_dir))
    sig = loaded.signatures["serving_default"]
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


async def load(url: str, body: bytes, concurrency: int, seconds: float) -> tuple[float, list[float], int]:
    import aiohttp

    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                async with session.post(url, data=body,
                                        headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    if r.status != 200:
                        failures += 1
                latencies.append(time.perf_counter() - t)

        for _ in range(20):  # warm connections and the model
            async with session.post(url, data=body) as r:
                await r.read()
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, latencies, failures


def start_server(serving_dir: Path, port: int, window_ms: float) -> subprocess.Popen[bytes]:
    import requests

    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving", "start", "--source", "directory", "--serving-dir",
         str(serving_dir), "--port", str(port), "--batch-window-ms", str(window_ms),
         "--log-level", "WARNING"], cwd=str(ROOT), env=env)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="a SavedModel to use (default: build a fresh one)")
    parser.add_argument("--batch-window-ms", type=float, default=0.0)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--output", choices=["table", "json"], default="table")
    args = parser.parse_args()

    from serving.server import free_port

    with tempfile.TemporaryDirectory() as tmp:
        serving_dir = Path(tmp) / "serving_model"
        version_dir = serving_dir / "mnist" / "1"
        if args.model_dir is not None:
            import shutil

            shutil.copytree(args.model_dir, version_dir)
        else:
            build_model(version_dir)
        port = free_port()
        proc = start_server(serving_dir, port, args.batch_window_ms)
        try:
            url = f"http://127.0.0.1:{port}/v1/models/mnist/versions/1:predict"
            image = [[[0.5] for _ in range(28)] for _ in range(28)]
            body = json.dumps({"signature_name": "serving_default", "instances": [image]}).encode()
            levels = [int(c) for c in args.concurrency.split(",")]
            runs: dict[str, list[float]] = {}
            failures = 0
            for _ in range(args.repeats):
                # alternate baseline and server so drift from other load hits both alike
                for key, value in baseline(version_dir, args.seconds).items():
                    runs.setdefault(key, []).append(value)
                for c in levels:
                    rps, latencies, failed = asyncio.run(load(url, body, c, args.seconds))
                    failures += failed
                    runs.setdefault(f"c{c}_rps", []).append(rps)
                    if c == 1:
                        runs.setdefault("p50_ms", []).append(percentile(latencies, 50) * 1e3)
                        runs.setdefault("p99_ms", []).append(percentile(latencies, 99) * 1e3)
        finally:
            proc.terminate()
            proc.wait(30)
    med = {k: statistics.median(v) for k, v in runs.items()}
    base = med["signature_rps"]
    rows = [
        ("in-process loop, signature call (img/s)", med["signature_rps"], "", 1.0),
        ("in-process loop, pre-traced concrete fn (img/s)", med["concrete_rps"], "",
         med["concrete_rps"] / base),
        ("in-process p50 per call (ms)", med["signature_p50_ms"], "", None),
        ("server p50 latency, concurrency 1 (ms)", med["p50_ms"], "<= 5", None),
        ("server p99 latency, concurrency 1 (ms)", med["p99_ms"], "<= 20", None),
    ]
    for c in levels:
        rows.append((f"server throughput, concurrency {c} (req/s)", med[f"c{c}_rps"],
                     ">= 0.7x" if c == 32 else "", med[f"c{c}_rps"] / base))
    if args.output == "json":
        print(json.dumps({"medians": med, "runs": runs, "failures": failures,
                          "repeats": args.repeats, "seconds": args.seconds,
                          "cpus": os.cpu_count()}, indent=2))
        return
    print(f"serving benchmark: median of {args.repeats} x {args.seconds:g} s, "
          f"{os.cpu_count()} CPUs, batch window {args.batch_window_ms:g} ms, "
          f"{failures} failed requests")
    print(f"{'measure':52} {'median':>10} {'target':>8} {'vs loop':>8}")
    for name, value, target, ratio in rows:
        ratio_text = f"{ratio:.2f}x" if ratio is not None else ""
        print(f"{name:52} {value:10.2f} {target:>8} {ratio_text:>8}")


if __name__ == "__main__":
    main()
