"""How fast are the registry's read commands with 100 registered models?

Builds a throw-away MLMD database with 100 pipeline models (TFX-shaped records written by
``benchmarks/tfx_records.py``: a run with Trainer, Evaluator and Pusher each) and 50 of them deployed twice, then times whole processes
(`python -m registry ...`, i.e. `mlmodel`) against `python -c pass` in the same run.

    .venv/bin/python benchmarks/registry_bench.py [--models 100] [--runs 5]

Target: each read command <= 1 s wall.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build(root: Path, models: int) -> dict[str, str]:
    from benchmarks.tfx_records import add_pipeline_run, fake_model
    from contracts.settings import ENV_METADATA, ENV_SERVER_URL, ENV_SERVING_DIR
    from registry.api import open_registry

    metadata, serving = str(root / "metadata.sqlite"), str(root / "serving_model")
    model_dir = fake_model(root)
    reg = open_registry(metadata, serving)
    for i in range(models):
        name = f"model_{i:03d}"
        add_pipeline_run(metadata, name, model_dir, serving)
        if i % 2 == 0:
            reg.deploy(name, label="stable", user="root")
            reg.deploy(name, user="root")
    env = dict(os.environ)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="registry-bench-") as tmp:
        start = time.perf_counter()
        env = build(Path(tmp), args.models)
        print(f"setup: {args.models} models, {args.models // 2 * 2} deployments "
              f"in {time.perf_counter() - start:.1f}s")
        py = sys.executable
        cases = [
            ("python -c pass (baseline)", [py, "-c", "pass"]),
            ("mlmodel list", [py, "-m", "registry", "list"]),
            ("mlmodel summary model_050", [py, "-m", "registry", "summary", "model_050"]),
            ("serving status model_050", [py, "-m", "registry", "status", "model_050"]),
        ]
        rows = [(label, wall(argv, env, args.runs)) for label, argv in cases]
    base = statistics.median(rows[0][1])
    print(f"\n{'command':<30} {'median s':>9} {'min s':>7} {'vs baseline':>12} {'<= 1 s':>7}")
    for label, times in rows:
        med = statistics.median(times)
        ok = "yes" if med <= 1.0 else "NO"
        print(f"{label:<30} {med:>9.3f} {min(times):>7.3f} {med / base:>11.1f}x {ok:>7}")
    print(f"\n{args.runs} runs each; {os.cpu_count()} CPUs; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
