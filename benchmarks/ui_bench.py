"""How long does the web console take to render its pages on a large ML Metadata store?

Builds a throw-away SQLite MLMD of ``--models`` pipelines with ``--runs-per-model`` runs each, every
run the whole graph as TFX records it (ExampleGen, StatisticsGen, SchemaGen, ExampleValidator,
Transform, Trainer, Evaluator, Pusher; ``benchmarks/tfx_records.py``), half the models deployed
twice, and ``mlmodel eval`` records up to ``--artifacts``: 100 models, 1,000 runs and 10,000
artifacts by default. Then starts a real
``mlmodel ui`` process on it and reads each page's server time from its ``Server-Timing`` header
(the handler's time, from the request's arrival to the response; the network and the browser are
not in it): the first request (cold: the console's memos are empty) and the median of the next
``--runs``.

    .venv/bin/python benchmarks/ui_bench.py [--models 100] [--runs-per-model 10] [--runs 5]

Target (issue 12): <= 300 ms server time per page at 100 models, 1,000 runs, 10,000 artifacts.
Figures are not pages: they are drawn once per model on first view (seconds) and then cached.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_MS = 300.0


def build(root: Path, models: int, runs_per_model: int,
          artifacts_wanted: int) -> tuple[str, str, int, int]:
    """The database and serving dir; returns them with the run and artifact counts."""
    from benchmarks.tfx_records import add_pipeline_run, connect, fake_model
    from registry.api import open_registry

    metadata, serving = str(root / "metadata.sqlite"), str(root / "serving_model")
    model_dir = fake_model(root)
    store = connect(metadata)
    started = time.perf_counter()
    for run in range(runs_per_model):
        for i in range(models):
            add_pipeline_run(metadata, f"model_{i:03d}", model_dir, serving, store=store,
                             upstream=True, accuracy=0.9 + (i % 10) / 100)
        print(f"  runs {(run + 1) * models:,} ({time.perf_counter() - started:.0f} s)",
              file=sys.stderr)
    reg = open_registry(metadata, serving)
    for i in range(0, models, 2):
        reg.deploy(f"model_{i:03d}", label="stable", user="root")
        reg.deploy(f"model_{i:03d}", user="root")
    # Top up to the artifact count with `mlmodel eval` results (an Evaluation and a Dataset each),
    # as a team that evaluates its models on new data would have.
    missing = artifacts_wanted - len(store.get_artifacts())
    result = {"examples": 1000, "rate": 0.8, "repeat": 3, "accuracy": 0.95, "loss": 0.2}
    for n in range(max(0, (missing + 1) // 2)):
        name = f"model_{n % models:03d}"
        reg.record_evaluation(name, None, None, f"/data/batch_{n}", "png_folders", result,
                              user="root")
    runs = len(store.get_contexts_by_type("pipeline_run"))
    artifacts = len(store.get_artifacts())
    return metadata, serving, runs, artifacts


def server_ms(session: requests.Session, url: str) -> float:
    response = session.get(url, timeout=120)
    response.raise_for_status()
    timing = response.headers["Server-Timing"]  # app;dur=12.3
    return float(timing.split("dur=")[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--runs-per-model", type=int, default=10)
    parser.add_argument("--artifacts", type=int, default=10_000,
                        help="Top the store up to this many artifacts with `mlmodel eval` records.")
    parser.add_argument("--runs", type=int, default=5, help="Warm requests per page.")
    parser.add_argument("--json", default="", help="Also write the results here.")
    args = parser.parse_args()
    from benchmarks.machine import machine
    from serving.server import free_port

    with tempfile.TemporaryDirectory(prefix="ui-bench-") as tmp:
        root = Path(tmp)
        print(f"building {args.models} models x {args.runs_per_model} runs ...", file=sys.stderr)
        metadata, serving, runs, artifacts = build(root, args.models, args.runs_per_model,
                                                  args.artifacts)
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen(
            [sys.executable, "-m", "registry", "ui", "--port", str(port), "--auth-token", "bench",
             "--metadata", metadata, "--serving-dir", serving, "--pipeline-root", str(root)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    requests.get(f"{base}/healthz", timeout=1)
                    break
                except requests.RequestException:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise SystemExit("mlmodel ui did not start") from None
                    time.sleep(0.1)  # polling for the console to come up
            session = requests.Session()
            probe = f"model_{args.models // 2:03d}" if args.models // 2 % 2 == 0 else "model_000"
            runs_page = session.get(f"{base}/runs", timeout=60).text
            run_ids = [int(x.split('"')[0]) for x in runs_page.split('href="/runs/')[1:]
                       if x.split('"')[0].isdigit()]
            oldest_page = f"/runs?before={min(run_ids)}" if run_ids else "/runs"
            from benchmarks.tfx_records import connect

            newest_model = max(a.id for a in connect(metadata).get_artifacts_by_type("Model"))
            pages = [
                ("models (first page, by name)", "/models"),
                ("models sorted by accuracy", "/models?sort=accuracy&desc=1"),
                ("models filtered", "/models?q=model_05"),
                ("model page", f"/models/{probe}"),
                ("lineage of the current version", f"/models/{probe}/lineage"),
                ("confirm deploy", f"/models/{probe}/confirm/deploy"),
                ("runs (newest 25)", "/runs"),
                ("runs (second page)", oldest_page),
                ("run page", f"/runs/{max(run_ids)}" if run_ids else "/runs"),
                ("artifact page (Model)", f"/artifacts/{newest_model}"),
                ("predict page", "/predict"),
            ]
            rows = []
            for label, path in pages:
                cold = server_ms(session, base + path)
                warm = [server_ms(session, base + path) for _ in range(args.runs)]
                rows.append({"page": label, "path": path, "cold_ms": cold,
                             "warm_median_ms": statistics.median(warm), "warm_max_ms": max(warm)})
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    worst = max(max(r["cold_ms"], r["warm_median_ms"]) for r in rows)
    print(f"\nmlmodel ui server time per page: {args.models} models, {runs:,} pipeline runs, "
          f"{artifacts:,} artifacts (SQLite); target <= {TARGET_MS:.0f} ms")
    print(f"{'page':34} {'cold ms':>9} {'warm median':>12} {'warm max':>9}")
    for r in rows:
        print(f"{r['page']:34} {r['cold_ms']:9.1f} {r['warm_median_ms']:12.1f} "
              f"{r['warm_max_ms']:9.1f}")
    print(f"\nworst page: {worst:.1f} ms ({'within' if worst <= TARGET_MS else 'OVER'} the "
          f"{TARGET_MS:.0f} ms target)\n{machine()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"models": args.models, "runs": runs,
                                               "artifacts": artifacts, "pages": rows,
                                               "worst_ms": worst}, indent=2))


if __name__ == "__main__":
    main()
