"""ExampleGen on data in object storage vs the same files on local disk, same run.

Uploads the embedded digits (1,797 PNGs in label folders, as ``make run`` writes them) and
Fashion-MNIST's four IDX files (70,000 images) to a real S3-compatible server on loopback (moto's
standalone server, ``moto[server]``), with the seed's boto3 upload loop, then times a
one-component TFX pipeline (our ExampleGen: layout detection, the driver's input fingerprint,
listing and reading every object through Beam, writing the examples) reading ``s3://bucket/...``
and reading the local files, alternately, ``--repeats`` times, each with a fresh pipeline root and
MLMD (nothing cached).

    .venv/bin/python benchmarks/object_storage_bench.py [--repeats 3] [--datasets digits]

Target (issue 11): the s3:// ExampleGen takes at most 2x the local one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_RATIO = 2.0


def run_example_gen(data: str, root: Path, beam_args: list[str]) -> float:
    """Seconds for a pipeline holding only ExampleGen, on ``data``, from scratch."""
    from tfx import v1 as tfx

    from pipeline.components.image_example_gen import make_example_gen
    from pipeline.metadata_config import connection_config

    started = time.perf_counter()
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="object_storage_bench", pipeline_root=str(root / "root"),
        components=[make_example_gen(data)], enable_cache=False,
        metadata_connection_config=connection_config(str(root / "metadata.sqlite")),
        beam_pipeline_args=beam_args)
    tfx.orchestration.LocalDagRunner().run(pipeline)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--datasets", default="digits,fashion-mnist",
                        help="digits (1,797 PNG objects) and/or fashion-mnist (4 IDX objects, "
                             "70,000 images; needs Debian's dataset-fashion-mnist)")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    from contracts.runtime import configure_tensorflow

    configure_tensorflow()
    from benchmarks.machine import machine
    from pipeline.components import storage
    from pipeline.datasets import FASHION_MNIST_DIR, materialize_digits
    from pipeline.run import IN_MEMORY_BEAM
    from tests.s3_server import running_s3, s3_environment, upload_tree

    results = {}
    with tempfile.TemporaryDirectory(prefix="object-storage-bench-") as tmp:
        root = Path(tmp)
        sources = {}
        for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
            if name == "digits":
                sources[name] = Path(materialize_digits(str(root / "digits")))
            elif Path(FASHION_MNIST_DIR).is_dir():
                sources[name] = Path(FASHION_MNIST_DIR)
            else:
                print(f"skipping {name}: apt-get install dataset-fashion-mnist", file=sys.stderr)
        with running_s3(root / "moto.log") as endpoint, s3_environment(endpoint):
            import boto3

            boto3.client("s3").create_bucket(Bucket="bench")
            beam = [*IN_MEMORY_BEAM, f"--s3_endpoint_url={endpoint}"]
            storage.configure(beam)
            for name, local in sources.items():
                started = time.perf_counter()
                count = upload_tree(local, "bench", name)
                upload_s = time.perf_counter() - started
                times: dict[str, list[float]] = {"local": [], "s3": []}
                for repeat in range(args.repeats):
                    for source, data in (("local", str(local)), ("s3", f"s3://bench/{name}")):
                        seconds = run_example_gen(data, root / f"{name}-{source}-{repeat}", beam)
                        times[source].append(seconds)
                        print(f"  {name} {source:5} run {repeat + 1}: {seconds:.1f} s",
                              file=sys.stderr)
                med = {k: statistics.median(v) for k, v in times.items()}
                results[name] = {"objects": count, "upload_s": upload_s, "times": times,
                                 "median": med, "ratio": med["s3"] / med["local"]}
    print(f"\nExampleGen, local folder vs s3:// on moto's server (loopback), median of "
          f"{args.repeats}; target s3:// <= {TARGET_RATIO:.0f}x local")
    print(f"{'data':16} {'objects':>8} {'local s':>8} {'s3 s':>8} {'ratio':>7}")
    for name, r in results.items():
        print(f"{name:16} {r['objects']:8,} {r['median']['local']:8.1f} {r['median']['s3']:8.1f} "
              f"{r['ratio']:6.2f}x")
    print(machine())
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
