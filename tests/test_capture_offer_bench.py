"""benchmarks/capture_offer_bench.py runs the real capture paths (writer process included) and
reports a positive cost for each, in the server and in the writer."""

from __future__ import annotations

import re

import pytest

from benchmarks import capture_offer_bench


def test_it_measures_each_path(capsys: pytest.CaptureFixture[str]) -> None:
    capture_offer_bench.main(["--requests", "200", "--per-call", "4"])
    out = capsys.readouterr().out
    rows = {name.strip(): (float(server), float(writer)) for name, server, writer in
            re.findall(r"^  (per (?:call|request) \([^)]*\))\s+([\d.]+)\s+([\d.]+)$", out,
                       re.MULTILINE)}
    assert set(rows) == {"per call (after_call, model thread)",
                         "per request (offer, event loop)"}, out
    assert all(server > 0 and writer > 0 for server, writer in rows.values()), out
    assert "200 requests, 4 per model call" in out
