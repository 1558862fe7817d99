"""Graceful shutdown: count the requests being handled and wait for them before closing connections.

Why by hand: aiohttp's ``AppRunner.cleanup()`` closes every connection first and only then waits
for handlers, and a closed connection drops the bytes still arriving
(``RequestHandler.data_received`` returns early once ``close()`` was called). A request whose
body is still uploading when SIGTERM comes then never gets its body and is aborted. So the server
stops listening, waits here until no request is being handled, and only then lets aiohttp close
the (now idle) connections.
"""

from __future__ import annotations

import asyncio
import time


class Drain:
    """Tracks requests in progress; ``draining`` turns readiness off and keep-alive off."""

    def __init__(self) -> None:
        self.reopen()

    def reopen(self) -> None:
        """Start afresh: a runtime served again (a restart in tests) is not draining."""
        self.active = 0
        self.draining = False
        self._idle = asyncio.Event()  # binds to the loop that first waits on it (Python 3.10)
        self._idle.set()

    def enter(self) -> None:
        self.active += 1
        self._idle.clear()

    def leave(self) -> None:
        self.active -= 1
        if self.active == 0:
            self._idle.set()

    async def wait_idle(self, timeout_s: float, abort: asyncio.Event | None = None) -> bool:
        """Start draining and wait until no request is in progress; False when time ran out
        or ``abort`` was set (a second Ctrl-C).

        A request that arrives on a kept-alive connection while draining is still served (and
        waited for), but its response closes the connection.
        """
        self.draining = True
        deadline = time.monotonic() + timeout_s
        while self.active:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (abort is not None and abort.is_set()):
                return False
            waiters = [asyncio.ensure_future(self._idle.wait())]
            if abort is not None:
                waiters.append(asyncio.ensure_future(abort.wait()))
            try:
                await asyncio.wait(waiters, timeout=remaining,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if abort is not None and abort.is_set():
                return False
            await asyncio.sleep(0)  # let a pipelined request that was just parsed enter
        return True
