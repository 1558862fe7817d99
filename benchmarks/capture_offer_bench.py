"""What request capture costs the server itself, per request, without the noise of a load test.

    python benchmarks/capture_offer_bench.py [--requests 20000] [--per-call 8]

``serving_bench.py --capture`` compares whole servers with and without capture at concurrency
32; on two shared cores its ratios move by +-10% from run to run. This measures the part of
capture that runs in the server, in isolation, for one-image Predict requests answered
``--per-call`` at a time by one model call (the batcher's batch):

* **per call** (what the server does): ``capture.after_call`` once per model call, on a thread
  that is not an event loop (the model's thread), with a started writer process: the prediction
  metrics, the sampling, one frame of the call's arrays and each request's rows, one ``writev``;
* **per request** (what it did before): one ``offer`` per request on an event loop, the frames
  of ``--per-call`` requests sent in one ``writev`` at the end of the loop's pass;

and the writer process's CPU per record in each case. All figures are CPU microseconds per
request, next to the server's CPU per request that ``serving_bench.py`` reports.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _children_cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> None:
    import numpy as np

    from serving import capture
    from serving.capture_worker import CaptureSettings
    from serving.metrics import Metrics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--per-call", type=int, default=8,
                        help="one-image requests answered by one model call (a batch)")
    args = parser.parse_args(argv)
    per_call = max(1, args.per_call)
    calls = max(1, args.requests // per_call)
    requests = calls * per_call
    rng = np.random.default_rng(0)
    image = rng.random((1, 28, 28, 1)).astype(np.float32)
    joined = {"images": np.concatenate([image] * per_call)}
    probabilities = rng.dirichlet(np.ones(10), per_call).astype(np.float32)
    servable = SimpleNamespace(name="mnist", version=1, class_names=[str(i) for i in range(10)])
    results: dict[str, tuple[float, float]] = {}

    with tempfile.TemporaryDirectory() as directory:
        # per call, off the event loop (the model's thread): as the server does it
        metrics = Metrics()
        writer = capture.CaptureWriter(
            CaptureSettings(directory=os.path.join(directory, "call"), rate=1.0), metrics).start()
        ctx = SimpleNamespace(metrics=metrics, capture=writer)
        answer = capture.answer(ctx, servable)
        rows = [(1, answer)] * per_call
        started, children = time.process_time(), _children_cpu()
        for _ in range(calls):
            capture.after_call("serving_default", joined, {"probabilities": probabilities}, rows)
        server_s = time.process_time() - started
        writer.close()
        results["per call (after_call, model thread)"] = (server_s,
                                                          _children_cpu() - children)

        # per request, on the event loop: as the server did it before
        writer = capture.CaptureWriter(
            CaptureSettings(directory=os.path.join(directory, "request"), rate=1.0)).start()
        outputs = [{"probabilities": probabilities[i:i + 1]} for i in range(per_call)]

        async def offer_all() -> float:
            started = time.process_time()
            for _ in range(calls):
                for one in outputs:
                    writer.offer("mnist", 1, "serving_default", "predict", {"images": image},
                                 one, servable.class_names, time.time())
                await asyncio.sleep(0)  # the end of a pass: its frames go out together
            return time.process_time() - started

        children = _children_cpu()
        server_s = asyncio.run(offer_all())
        writer.close()
        results["per request (offer, event loop)"] = (server_s, _children_cpu() - children)

    print(f"capture's cost per one-image Predict, {requests:,} requests, {per_call} per model "
          "call (CPU us per request):")
    print(f"  {'':40} {'server':>8} {'writer process':>15}")
    for what, (server_s, writer_s) in results.items():
        print(f"  {what:40} {server_s / requests * 1e6:8.1f} {writer_s / requests * 1e6:15.1f}")
    print("  (per call includes the prediction metrics, which the server counts with capture "
          "off too)")


if __name__ == "__main__":
    main()
