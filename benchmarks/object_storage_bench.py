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

It also measures the bound the test server itself sets. moto keeps every bucket in one Python
process, so no client reads the objects faster than that process can answer them:

* "moto CPU": the CPU time moto's server process spent during each ``s3://`` run (from
  ``/proc``), its HTTP server (werkzeug's, which closes every connection) included;
* "app floor": the CPU moto's own application (the WSGI app ``moto_server`` runs, called in a
  process of its own with no HTTP server, no network and no client) spends to answer one GET of
  every object.

Either one over the target times the local time means the target cannot be met against this
server, whatever the reader does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_RATIO = 2.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def run_example_gen(data: str, root: Path, beam_args: list[str]) -> float:
    """Seconds for a pipeline holding only ExampleGen, on ``data``, from scratch."""
    from tfx import v1 as tfx

    from metastore.metadata_config import connection_config
    from pipeline.components.image_example_gen import make_example_gen

    started = time.perf_counter()
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="object_storage_bench", pipeline_root=str(root / "root"),
        components=[make_example_gen(data)], enable_cache=False,
        metadata_connection_config=connection_config(str(root / "metadata.sqlite")),
        beam_pipeline_args=beam_args)
    tfx.orchestration.LocalDagRunner().run(pipeline)
    return time.perf_counter() - started


def moto_floor_seconds(folder: Path) -> float:
    """CPU seconds moto's own app spends answering one GET of every file under ``folder``
    (stored first with PUTs through the same app): no HTTP server, socket or client. Run in a
    process of its own (``--moto-floor``), so importing moto changes nothing here."""
    out = subprocess.run([sys.executable, __file__, "--moto-floor", str(folder)], check=True,
                         capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def _moto_floor(folder: Path) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.test import EnvironBuilder

    app = DomainDispatcherApplication(create_backend_app)
    # what a SigV4 client sends, so that moto routes the request to S3 as it does over HTTP
    auth = ("AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, "
            "SignedHeaders=host, Signature=0")

    def call(method: str, path: str, data: bytes = b"") -> None:
        environ = EnvironBuilder(method=method, path=path, data=data, headers={
            "Host": "127.0.0.1", "Authorization": auth}).get_environ()
        statuses: list[str] = []
        b"".join(app(environ, lambda status, headers: statuses.append(status)))
        if not statuses[0].startswith("200"):
            raise RuntimeError(f"moto answered {statuses[0]} to {method} {path}")

    call("PUT", "/floor")
    keys = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        keys.append(f"/floor/{path.relative_to(folder).as_posix()}")
        call("PUT", keys[-1], path.read_bytes())
    started = time.process_time()
    for key in keys:
        call("GET", key)
    print(time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--datasets", default="digits,fashion-mnist",
                        help="digits (1,797 PNG objects) and/or fashion-mnist (4 IDX objects, "
                             "70,000 images; needs Debian's dataset-fashion-mnist)")
    parser.add_argument("--json", default="")
    parser.add_argument("--moto-floor", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.moto_floor is not None:
        _moto_floor(args.moto_floor)
        return
    from contracts.runtime import configure_tensorflow

    configure_tensorflow()
    from benchmarks.machine import machine
    from datasources import storage
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
        moto_pids: list[int] = []
        with running_s3(root / "moto.log", pids=moto_pids) as endpoint, \
                s3_environment(endpoint):
            import boto3

            boto3.client("s3").create_bucket(Bucket="bench")
            beam = [*IN_MEMORY_BEAM, f"--s3_endpoint_url={endpoint}"]
            storage.configure(beam)
            for name, local in sources.items():
                started = time.perf_counter()
                count = upload_tree(local, "bench", name)
                upload_s = time.perf_counter() - started
                times: dict[str, list[float]] = {"local": [], "s3": [], "moto_cpu": []}
                for repeat in range(args.repeats):
                    for source, data in (("local", str(local)), ("s3", f"s3://bench/{name}")):
                        moto_before = cpu_seconds(moto_pids[0])
                        seconds = run_example_gen(data, root / f"{name}-{source}-{repeat}", beam)
                        times[source].append(seconds)
                        if source == "s3":
                            times["moto_cpu"].append(cpu_seconds(moto_pids[0]) - moto_before)
                        print(f"  {name} {source:5} run {repeat + 1}: {seconds:.1f} s",
                              file=sys.stderr)
                med = {k: statistics.median(v) for k, v in times.items()}
                floor = moto_floor_seconds(local)
                results[name] = {"objects": count, "upload_s": upload_s, "times": times,
                                 "median": med, "ratio": med["s3"] / med["local"],
                                 "moto_floor_s": floor, "floor_ratio": floor / med["local"],
                                 "moto_cpu_ratio": med["moto_cpu"] / med["local"]}
    print(f"\nExampleGen, local folder vs s3:// on moto's server (loopback), median of "
          f"{args.repeats}; target s3:// <= {TARGET_RATIO:.0f}x local")
    print(f"{'data':16} {'objects':>8} {'local s':>8} {'s3 s':>8} {'ratio':>7} "
          f"{'moto CPU s':>11} {'/local':>7} {'app floor s':>12} {'/local':>7}")
    for name, r in results.items():
        med = r["median"]
        print(f"{name:16} {r['objects']:8,} {med['local']:8.1f} {med['s3']:8.1f} "
              f"{r['ratio']:6.2f}x {med['moto_cpu']:11.2f} {r['moto_cpu_ratio']:6.2f}x "
              f"{r['moto_floor_s']:12.2f} {r['floor_ratio']:6.2f}x")
    print("moto CPU: what moto's server process spent during the s3:// run; app floor: moto's own "
          "app answering one GET per object in-process, without HTTP or a client. Both bound any "
          "reader against this server.")
    print(machine())
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
