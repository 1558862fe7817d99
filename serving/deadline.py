"""``within(coro, seconds)``: a per-request deadline without ``asyncio.wait_for``'s extra task.

On Python 3.10 ``wait_for`` wraps the coroutine in a new task, and the request's own task then
waits for it: two more trips through the event loop per request, which measured about 0.1 ms
of a 1.8 ms one-image gRPC call. This does what 3.11's ``asyncio.timeout`` does instead: it
runs the coroutine in the calling task and cancels that task when the deadline passes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def within(coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
    """Await ``coro`` in this task; ``asyncio.TimeoutError`` once ``timeout_s`` has passed.
    A cancellation from elsewhere (a client that went away) stays a ``CancelledError``."""
    task = asyncio.current_task()
    if task is None:  # not in a task (cannot happen in a server handler): the usual way
        return await asyncio.wait_for(coro, timeout_s)
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    handle = asyncio.get_running_loop().call_later(max(timeout_s, 0.0), expire)
    try:
        return await coro
    except asyncio.CancelledError:
        if expired:
            raise asyncio.TimeoutError from None
        raise
    finally:
        handle.cancel()
