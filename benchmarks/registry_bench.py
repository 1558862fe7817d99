"""How do the registry's read commands grow with the number of models?

For each size (default 100 and 1,000 models; 10,000 with ``--with-10k``, whose setup takes
several minutes), builds a throw-away SQLite MLMD database of pipeline models (TFX-shaped records
written by ``benchmarks/tfx_records.py``: one run each with Trainer, Evaluator and Pusher, plus 10
more runs for ten of them), half of them deployed twice, then times

* whole processes (`mlmodel ...`, the installed script) against `python -c pass` and against
  `python -c "import ml_metadata"` (the floor of any command that reads MLMD), taking turns
  round by round so that the load of a shared machine falls on all of them alike;
* in process: `list_page()` (the first page of 100), `summary()`, `versions()` (what `status`
  reads), and the model server's idle poll (`serving.sources.registry_source`), in CPU ms.

    .venv/bin/python benchmarks/registry_bench.py [--models 100,1000] [--with-10k] [--runs 5]
        [--backends sqlite,mysql]

Targets (issue 15): `mlmodel list` first page <= 0.3 s wall, summary/status <= 0.3 s, an idle
poll < 5 ms CPU at 1,000 models; the cost should not grow with the number of models.
Issue 23: `mlmodel list` at 1,000 models <= 1.5x `python -c "import ml_metadata"` (medians of the
same run; printed as "list / import ml_metadata").
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROBE = "model_050"
LIST_LABEL = "mlmodel list"
FLOOR_LABEL = "python -c 'import ml_metadata'"
LIST_TARGET = 1.5  # issue 23: mlmodel list <= 1.5x the import of ml_metadata


def build(root: Path, models: int, metadata: str, extra_runs: int = 10,
          extra_models: int = 10) -> dict[str, str]:
    """The database and serving dir for ``models`` models; returns the environment to run in."""
    from benchmarks.tfx_records import add_pipeline_run, connect, fake_model
    from contracts.settings import ENV_METADATA, ENV_SERVER_URL, ENV_SERVING_DIR
    from registry.api import open_registry

    serving = str(root / "serving_model")
    model_dir = fake_model(root)
    reg = open_registry(metadata, serving)
    store = connect(metadata)
    for i in range(models):
        name = f"model_{i:03d}"
        add_pipeline_run(metadata, name, model_dir, serving, store=store)
        if i < extra_models:
            for _ in range(extra_runs):
                add_pipeline_run(metadata, name, model_dir, serving, store=store)
        if i % 2 == 0:
            reg.deploy(name, label="stable", user="root")
            reg.deploy(name, user="root")
    env = dict(os.environ)
    # Timed as a user's second run: with the bytecode Python caches on the first (a session that
    # sets PYTHONDONTWRITEBYTECODE would compile every module of ours on every run, ~90 ms).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update({ENV_METADATA: metadata, ENV_SERVING_DIR: serving,
                ENV_SERVER_URL: "http://127.0.0.1:9", "PYTHONPATH": str(REPO)})
    return env


def wall(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return times


def child_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


PROCESS_CPU: dict[str, list[float]] = {}  # label -> CPU s of each timed process (less load-bound)


def walls_in_turns(cases: list[tuple[str, list[str]]], env: dict[str, str],
                   runs: int) -> dict[str, list[float]]:
    """Each case once per round, ``runs`` rounds: a load spike hits every case, not one. The
    processes' CPU seconds go to ``PROCESS_CPU`` (replaced on each call)."""
    times: dict[str, list[float]] = {label: [] for label, _ in cases}
    PROCESS_CPU.clear()
    for _ in range(runs):
        for label, argv in cases:
            before = child_cpu()
            times[label] += wall(argv, env, 1)
            PROCESS_CPU.setdefault(label, []).append(child_cpu() - before)
    return times


def cpu_ms(fn: Callable[[], object], runs: int) -> float:
    """Median CPU milliseconds of ``fn`` (process time: the machine is shared)."""
    times = []
    for _ in range(runs):
        start = time.process_time()
        fn()
        times.append((time.process_time() - start) * 1000)
    return statistics.median(times)


def in_process(env: dict[str, str], runs: int) -> dict[str, float]:
    from contracts.settings import ENV_METADATA, ENV_SERVING_DIR
    from registry.api import open_registry
    from serving.sources import registry_source

    metadata, serving = env[ENV_METADATA], env[ENV_SERVING_DIR]
    reg = open_registry(metadata, serving)
    reg.list_page()  # connect
    poll = registry_source(metadata, serving)
    poll()  # the first poll reads the whole snapshot
    return {
        "list_page() first 100": cpu_ms(lambda: reg.list_page(limit=100), runs),
        "list_page(order_by=modified)": cpu_ms(lambda: reg.list_page(order_by="modified"), runs),
        f"summary({PROBE})": cpu_ms(lambda: reg.summary(PROBE), runs),
        f"versions({PROBE}) (status)": cpu_ms(lambda: reg.versions(PROBE), runs),
        "server idle poll": cpu_ms(poll, runs * 10),
        "serving_snapshot() full read": cpu_ms(reg.serving_snapshot, runs),
    }


def measure(size: int, backend: str, cases: list[tuple[str, list[str]]], runs: int,
            mysql_port: int | None) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Build a registry of ``size`` models on ``backend`` and time the commands on it."""
    with tempfile.TemporaryDirectory(prefix="registry-bench-") as tmp:
        if backend == "mysql":
            metadata = f"mysql://root@127.0.0.1:{mysql_port}/bench_{size}"
        else:
            metadata = str(Path(tmp) / "metadata.sqlite")
        start = time.perf_counter()
        env = build(Path(tmp), size, metadata)
        print(f"setup ({backend}): {size:,} models (+{min(size, 10) * 10} extra runs), "
              f"{(size + 1) // 2 * 2:,} deployments in {time.perf_counter() - start:.1f}s",
              flush=True)
        # The first list writes the list index (like any first read); every first run writes
        # the bytecode caches.
        walls_in_turns(cases, env, 1)
        return walls_in_turns(cases, env, runs), in_process(env, runs)


def print_tables(walls: dict[str, dict[str, list[float]]], cpus: dict[str, dict[str, float]],
                 cases: list[tuple[str, list[str]]], runs: int) -> None:
    columns = list(walls)
    head = "".join(f"{c:>16}" for c in columns)
    print(f"\nwhole process, median wall s ({runs} runs)\n{'command':<32}{head}")
    for label, _ in cases:
        print(f"{label:<32}" + "".join(f"{statistics.median(walls[c][label]):>16.3f}"
                                       for c in columns))
    ratios = {c: statistics.median(walls[c][LIST_LABEL]) / statistics.median(walls[c][FLOOR_LABEL])
              for c in columns}
    print(f"{'list / import ml_metadata':<32}" + "".join(f"{ratios[c]:>15.2f}x" for c in columns)
          + f"   (target <= {LIST_TARGET}x)")
    if PROCESS_CPU:  # the last size measured: CPU seconds move less with the machine's load
        cpu = {label: statistics.median(v) for label, v in PROCESS_CPU.items()}
        print(f"\nwhole process, median CPU s (user+sys), {columns[-1]}")
        for label, _ in cases:
            print(f"{label:<32}{cpu[label]:>16.3f}")
        print(f"{'list / import ml_metadata':<32}{cpu[LIST_LABEL] / cpu[FLOOR_LABEL]:>15.2f}x")
    print(f"\nin process, median CPU ms\n{'call':<32}{head}")
    for label in cpus[columns[0]]:
        print(f"{label:<32}" + "".join(f"{cpus[c][label]:>16.2f}" for c in columns))
    for backend in ("sqlite", "mysql"):
        mine = [c for c in columns if c.endswith(backend)]
        if len(mine) < 2:
            continue
        a, b = mine[0], mine[-1]
        print(f"\ngrowth {b} vs {a} (median ratio; 1.0 = flat):")
        for label, _ in cases[2:]:
            ratio = statistics.median(walls[b][label]) / statistics.median(walls[a][label])
            print(f"  {label:<30} {ratio:.2f}x wall")
        for label in cpus[a]:
            ratio = cpus[b][label] / max(cpus[a][label], 1e-6)
            print(f"  {label:<30} {ratio:.2f}x CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="100,1000",
                        help="Comma-separated registry sizes (default 100,1000).")
    parser.add_argument("--with-10k", action="store_true",
                        help="Add 10,000 models (setup takes several minutes: ~40 s per 1,000).")
    parser.add_argument("--backends", default="sqlite",
                        help="Comma-separated: sqlite, mysql (a private MariaDB server is started; "
                             "needs apt-get install -y mariadb-server).")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(x) for x in args.models.split(",") if x.strip()]
    if args.with_10k and 10000 not in sizes:
        sizes.append(10000)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    py = sys.executable
    script = os.path.join(os.path.dirname(py), "mlmodel")  # what a user runs
    mlmodel = [script] if os.path.isfile(script) else [py, "-m", "registry"]
    cases = [
        ("python -c pass (baseline)", [py, "-c", "pass"]),
        (FLOOR_LABEL, [py, "-c", "import ml_metadata"]),
        (LIST_LABEL, [*mlmodel, "list"]),
        (f"mlmodel summary {PROBE}", [*mlmodel, "summary", PROBE]),
        (f"serving status {PROBE}", [*mlmodel, "status", PROBE]),
    ]
    walls: dict[str, dict[str, list[float]]] = {}
    cpus: dict[str, dict[str, float]] = {}
    with contextlib.ExitStack() as stack:
        port = None
        if "mysql" in backends:
            from benchmarks.mariadb_server import available, running_mariadb

            why_not = available()
            if why_not:
                raise SystemExit(f"--backends mysql: {why_not}")
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="registry-bench-db-"))
            port, _ = stack.enter_context(running_mariadb(Path(tmp)))
        for backend in backends:
            for size in sizes:
                column = f"{size:,} {backend}"
                walls[column], cpus[column] = measure(size, backend, cases, args.runs, port)
    print_tables(walls, cpus, cases, args.runs)
    print(f"\n{os.cpu_count()} CPUs; python {sys.version.split()[0]}; "
          f"load average {os.getloadavg()[0]:.1f} (a shared machine: compare ratios)")


if __name__ == "__main__":
    main()
