"""benchmarks/capture_offer_bench.py runs the real offer path (writer process included) and
reports a positive cost for each part."""

from __future__ import annotations

import re

import pytest

from benchmarks import capture_offer_bench


def test_it_measures_each_part(capsys: pytest.CaptureFixture[str]) -> None:
    capture_offer_bench.main(["--requests", "200", "--per-pass", "4"])
    out = capsys.readouterr().out
    figures = {name: float(value) for name, value in
               re.findall(r"^  (server, framing|server, the whole offer|writer process)\D*"
                          r"([\d.]+) us$", out, re.MULTILINE)}
    assert set(figures) == {"server, framing", "server, the whole offer", "writer process"}
    assert all(value > 0 for value in figures.values()), out
