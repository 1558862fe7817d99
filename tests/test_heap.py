"""pipeline.heap: the run's imports stay out of full collections, and only for the run."""

from __future__ import annotations

import gc
import weakref

from pipeline.heap import imports_frozen


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_the_block_freezes_what_is_alive_and_gives_it_back() -> None:
    before = gc.get_freeze_count()
    kept = [object() for _ in range(10)]
    with imports_frozen():
        assert gc.get_freeze_count() > before + len(kept) - 1
    assert gc.get_freeze_count() == before


def test_garbage_from_before_the_block_is_collected_not_frozen() -> None:
    gc.disable()  # so the cycle is still uncollected garbage when the block starts
    try:
        cycle = weakref.ref(_Cycle())
        assert cycle() is not None
        with imports_frozen():
            # collected on entry: a frozen cycle would live on in the permanent generation
            assert cycle() is None
    finally:
        gc.enable()


def test_garbage_made_inside_the_block_is_still_collected() -> None:
    with imports_frozen():
        cycle = weakref.ref(_Cycle())
        gc.collect()
        assert cycle() is None
