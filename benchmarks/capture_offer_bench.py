"""What request capture costs the server itself, per request, without the noise of a load test.

    python benchmarks/capture_offer_bench.py [--requests 20000] [--per-pass 8]

``serving_bench.py --capture`` compares whole servers with and without capture at concurrency
32; on two shared cores its ratios move by +-10% from run to run. This measures the part of
capture that runs in the server, in isolation: a started ``CaptureWriter`` (with its writer
process) on an event loop, one ``offer`` per answered request of a one-image Predict (as
``serving.capture.answered`` calls it), ``--per-pass`` requests per pass of the loop (a batch
answers its requests in one pass; the pass's frames go out in one ``writev``). It prints the
server's CPU microseconds per request for framing alone and for the whole offer path, and the
writer process's CPU per record, next to the server's CPU per request that ``serving_bench.py``
reports.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> None:
    import numpy as np

    from serving.capture import CaptureWriter
    from serving.capture_records import Item, encode_frame
    from serving.capture_worker import CaptureSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--per-pass", type=int, default=8,
                        help="requests answered per pass of the event loop (a batch)")
    args = parser.parse_args(argv)
    images = np.random.default_rng(0).random((1, 28, 28, 1)).astype(np.float32)
    outputs = {"probabilities": np.full((1, 10), 0.1, np.float32)}
    names = [str(i) for i in range(10)]

    started = time.process_time()
    for _ in range(args.requests):
        encode_frame(Item("mnist", 1, "serving_default", "predict", {"images": images}, outputs,
                          time.time(), names))
    framing_us = (time.process_time() - started) / args.requests * 1e6

    with tempfile.TemporaryDirectory() as directory:
        writer = CaptureWriter(CaptureSettings(directory=directory, rate=1.0)).start()

        async def offer_all() -> float:
            started = time.process_time()
            for index in range(args.requests):
                writer.offer("mnist", 1, "serving_default", "predict", {"images": images},
                             outputs, names, time.time())
                if index % args.per_pass == args.per_pass - 1:
                    await asyncio.sleep(0)  # the end of a pass: its frames go out together
            await asyncio.sleep(0)
            return (time.process_time() - started) / args.requests * 1e6

        offer_us = asyncio.run(offer_all())
        writer.close()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    writer_us = (children.ru_utime + children.ru_stime) / args.requests * 1e6
    print(f"capture's cost per one-image Predict, {args.requests:,} requests, "
          f"{args.per_pass} per loop pass:")
    print(f"  server, framing (encode_frame)        {framing_us:7.1f} us")
    print(f"  server, the whole offer path (writev) {offer_us:7.1f} us")
    print(f"  writer process, per record (+ start)  {writer_us:7.1f} us")


if __name__ == "__main__":
    main()
