"""benchmarks/fit_teardown_bench.py: one fit each way, small, and what it reports."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench() -> object:
    spec = importlib.util.spec_from_file_location(
        "fit_teardown_bench", ROOT / "benchmarks" / "fit_teardown_bench.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["fit_teardown_bench"] = module
    spec.loader.exec_module(module)
    return module


def test_one_fit_each_way_reports_its_wait_and_its_length() -> None:
    bench = _bench()
    for autotune in (True, False):
        fit = bench.one_fit(autotune, epochs=1, seed=0)  # type: ignore[attr-defined]
        assert set(fit) == {"fit_s", "after_last_epoch_s"}
        assert 0.0 <= fit["after_last_epoch_s"] <= fit["fit_s"]
