"""The process-wide collector setting `serving start` applies (see serving.server.configure_gc)."""

from __future__ import annotations

import gc

from serving.server import configure_gc


def test_configure_gc_raises_only_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        configure_gc(12_345)
        assert gc.get_threshold() == (12_345, before[1], before[2])
    finally:
        gc.set_threshold(*before)
