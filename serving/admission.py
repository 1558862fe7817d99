"""How many request-body bytes the server holds at once: the memory admission control.

A request costs several times its body in memory while it is parsed, converted and run (about
10x measured by ``benchmarks/serving_memory_bench.py``; once 165x, before big requests ran in
slices). ``--max-body-mb`` bounds one request, not how many arrive together: 8 parallel 5.8 MB
bodies took 2 GB. ``BodyBudget`` bounds the sum: a request takes its declared size (its
Content-Length; a chunked body takes the body limit) before its body is read, and gives it back
when its response is done. A request that does not fit while others hold the budget is answered
at once with 503 and ``Retry-After``, before anything is read; a lone request always fits, so
any body within ``--max-body-mb`` can be served on an idle server.

Everything runs on the event loop (no lock needed). Other front ends (gRPC) take from the same
budget with ``try_take``/``give``.
"""

from __future__ import annotations

from serving.errors import ServingError

RETRY_AFTER_S = 1


class Busy(ServingError):
    """503 UNAVAILABLE with a ``Retry-After`` hint: the budget is in use by other requests."""

    def __init__(self, message: str, retry_after_s: int = RETRY_AFTER_S) -> None:
        super().__init__("UNAVAILABLE", message)
        self.retry_after_s = retry_after_s


class BodyBudget:
    """Request-body bytes in flight, capped at ``limit_bytes`` (None: no cap)."""

    def __init__(self, limit_bytes: int | None) -> None:
        if limit_bytes is not None and limit_bytes < 1:
            raise ValueError(f"the in-flight body limit must be >= 1 byte, got {limit_bytes}")
        self.limit_bytes = limit_bytes
        self.in_use = 0
        self.refused = 0

    def try_take(self, size: int) -> bool:
        """Reserve ``size`` bytes; False (and nothing reserved) when they do not fit now."""
        if self.limit_bytes is not None and self.in_use and self.in_use + size > self.limit_bytes:
            self.refused += 1
            return False
        self.in_use += size
        return True

    def take(self, size: int) -> None:
        """``try_take`` or raise ``Busy``."""
        if not self.try_take(size):
            mb = (self.limit_bytes or 0) / (1024 * 1024)
            raise Busy(f"the server is holding {self.in_use / (1024 * 1024):.1f} MB of request "
                       f"bodies, its --max-inflight-mb limit is {mb:g} MB; retry in "
                       f"{RETRY_AFTER_S} s or send smaller requests")

    def give(self, size: int) -> None:
        self.in_use = max(0, self.in_use - size)
